"""Provider adapters: one module (or package) per realtime backend, behind one interface."""
