"""The `sessions-api` command (floor 3, beside the HTTP layer): `commands` parses and runs
operator commands through the data layer's public functions; `serve` starts the HTTP app;
`demo` loads the demo data; `progress` shows a long import's progress on a terminal."""
