"""MCP servers as pools of replicas: tool catalogs, weighted choice, safe failover."""
