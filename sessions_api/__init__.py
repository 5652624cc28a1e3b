"""The Sessions API server: app factory, settings, database, auth, errors and CLI."""
