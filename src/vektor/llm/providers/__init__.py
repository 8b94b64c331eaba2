"""Provider implementations: OpenAI-compatible, Anthropic, and the built-in local model."""
