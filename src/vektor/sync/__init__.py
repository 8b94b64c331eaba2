"""Devices and sessions, the live change feed, backup and restore."""
