"""realtime-relay: authorize channel subscriptions and relay publishes to a realtime provider."""

__version__ = "0.1.0"
