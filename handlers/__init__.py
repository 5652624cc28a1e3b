"""The HTTP layer's handlers: one module per spec tag, one function per operationId, named
after it (see `sessions_api.web.operations`): `sessions` (Sessions), `session_requests`
(Session requests), `devices`, `organizations`, `members`, `invitations`, `api_keys` (API
keys), `audit_log` (Audit log), `me`, `usage`, `webhooks`, `events`, `artifacts` and `artifact_files`
(Artifact files); `listing` shapes the list
envelope they share.

A handler reads its validated arguments, calls one public function of the data layer
(`sessions_api.models`), and shapes the answer; authentication, the organization, roles and
errors are handled once, in `sessions_api.web`.
"""
