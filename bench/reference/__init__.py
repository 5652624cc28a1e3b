"""The FastAPI + SQLModel reference implementation of listSessions and getSession."""
