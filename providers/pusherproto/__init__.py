"""Pusher Channels protocol pieces shared by local, pusher and apigateway providers."""
