"""Registration, login, device sessions and token rotation."""
