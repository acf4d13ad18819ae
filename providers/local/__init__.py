"""The embedded local provider: Pusher protocol 7 over WebSocket, SSE, and the Pusher HTTP API subset."""
