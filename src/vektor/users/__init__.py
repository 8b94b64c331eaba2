"""Accounts, profiles and preferences."""
