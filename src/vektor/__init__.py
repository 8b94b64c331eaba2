"""Vektor: backend for AI-assistant platforms."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vektor")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
