"""Ably: TokenRequests compiled from the channel policy, REST publishing, history and presence."""
