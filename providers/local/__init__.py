"""The embedded local provider: Pusher protocol 7, SSE, and the Pusher HTTP API subset."""
