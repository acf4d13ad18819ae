"""Contract tests: the relay's provider calls against HTTP fakes built from each provider's docs."""
