"""The domain: records, the provider port, identity, policy, the gates and services, stores.

Imports neither FastAPI nor any provider (import-linter, `make lint`)."""
