"""The OpenAI-compatible API (`/v1`), so any OpenAI client can use Vektor."""
