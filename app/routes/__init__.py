"""HTTP routes of the public interface, one module per concern."""
