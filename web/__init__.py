"""The HTTP layer (floor 3): the app factory and everything Connexion runs around handlers.

`app` builds the app; `routing` maps operations to `sessions_api.handlers`; `security` is
the bearer handler (key, organization, roles); `errors` maps every failure to the one error
envelope; `request_id` and the other middlewares; `documents` serves the contract and docs;
`validation` words request errors; `lifespan` runs each process's background work. It
imports the data layer and the infrastructure below it, never the CLI.
"""
