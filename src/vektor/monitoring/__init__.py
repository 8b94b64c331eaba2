"""Health and service status."""
