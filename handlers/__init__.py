"""Operation handlers, one module per tag, one function per operationId (see TagResolver)."""
