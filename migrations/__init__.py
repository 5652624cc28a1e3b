"""Alembic migrations, shipped in the package as `sessions_api.migrations` (see
`sessions_api.models.schema_version`, which points Alembic here)."""
