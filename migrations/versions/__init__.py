"""Alembic revisions, one file each (`alembic revision --autogenerate --rev-id NNNN -m "..."`)."""
