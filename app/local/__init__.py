"""The local provider's HTTP endpoints: its Pusher WebSocket, SSE and the Pusher HTTP API."""
