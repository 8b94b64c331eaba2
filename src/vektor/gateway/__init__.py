"""/mcp: Vektor's pooled MCP tools served to outside MCP clients (SPEC §3.12)."""
