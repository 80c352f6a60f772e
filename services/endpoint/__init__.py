"""The endpoint: the public mimi-compatible WebSocket and HTTP API."""
