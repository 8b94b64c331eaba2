"""LLM providers and the router that spreads requests over deployments."""
