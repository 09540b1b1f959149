"""The storage layer: the Store contract (api), the service every backend shares, and one package per backend."""
