"""The storage layer: the Store contract (api), the service every backend shares
(service), the backend-neutral decisions (rules), and one package per backend."""
