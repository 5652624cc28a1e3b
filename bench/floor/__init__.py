"""The floor: listSessions and getSession in bare Starlette with driver-level SQL."""
