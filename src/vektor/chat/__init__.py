"""Conversations, streamed answers, history and search."""
