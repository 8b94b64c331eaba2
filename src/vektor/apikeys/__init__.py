"""Per-user API keys for programmatic access (the OpenAI-compatible API)."""
