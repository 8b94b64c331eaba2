"""The /config endpoints: model and MCP server configuration, as the API shows it."""
