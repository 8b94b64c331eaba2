"""The MCP server fixtures, for the tests that ask for Vektor's tools through /v1."""

from tests.mcp.conftest import mcp_servers, url

__all__ = ["mcp_servers", "url"]
