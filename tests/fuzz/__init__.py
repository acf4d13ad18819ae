"""Property-based fuzzing of the relay's public HTTP interface."""
