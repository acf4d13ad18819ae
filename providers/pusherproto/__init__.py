"""The Pusher Channels protocol pieces shared by the providers that speak it (local, pusher, apigateway)."""
