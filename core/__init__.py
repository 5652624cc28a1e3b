"""Infrastructure (floor 1): what every other layer needs, importing nothing of ours.

Settings (`settings`), the engine and its two transactions (`db`), time and id helpers
(`timestamps`, `ids`), retries (`retry`), the request id on log lines (`logs`), and the files
the package ships (`resources`). Code here knows nothing of HTTP or of the tables.
"""
