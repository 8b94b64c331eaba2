"""The MCP server fixtures, for the dashboard test."""

from tests.mcp.conftest import mcp_servers, url

__all__ = ["mcp_servers", "url"]
