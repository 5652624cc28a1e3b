"""The HTTP layer (floor 3): the app factory and everything Connexion runs around handlers.

`app` builds the app and says a request's path through it; `state` is what one app owns;
`operations` is the table of operations read from the spec once; `requests` reads a request
once; `validation` holds the compiled rules for parameters and bodies; `dispatch` refuses
ambiguous requests and calls handlers; `jsonifier` is Connexion's JSON with orjson;
`security` is the bearer handler (key, organization, roles); `rate_limits` the budgets;
`errors` maps every failure to the one error envelope; `observe`, `body_limit`, `probes`,
`metrics` and `documents` are the other middlewares and what they serve; `protocols` is
uvicorn's protocol with bounded heads; `lifespan` runs each app's background work: the
webhook sender (`webhooks`, with each endpoint's adaptive window: `delivery_windows`) and
the queue server (`queue`). It imports the data layer and
the infrastructure below it, never the CLI.
"""
