"""Provider adapters: one module (or package) per realtime backend behind `providers.base.Provider`."""
