"""The HTTP layer's handlers: one module per spec tag, one function per operationId, named
after it (`Sessions` -> `handlers/sessions.py`, see `sessions_api.web.operations`).

A handler reads its validated arguments, calls one public function of the data layer
(`sessions_api.models`), and shapes the answer; authentication, the organization, roles and
errors are handled once, in `sessions_api.web`.
"""
