"""Backend adapters: one module per backend, all behind the interface in :mod:`backends.base`."""
