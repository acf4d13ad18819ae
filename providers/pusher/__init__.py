"""Pusher Channels (and self-hosted Pusher-protocol servers such as soketi)."""
