"""One Pusher protocol conformance suite for the local relay, API Gateway and soketi."""
