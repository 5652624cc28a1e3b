"""The bearer security handler named in the spec (`x-bearerInfoFunc`).

It authenticates the API key and resolves the organization the request acts on, once, for
every operation; handlers receive the result as `token_info["principal"]`.
"""

from __future__ import annotations

from datetime import timedelta

from connexion.exceptions import OAuthResponseProblem
from starlette.concurrency import run_in_threadpool

from models import keys
from sessions_api import settings
from sessions_api.errors import UNAUTHENTICATED_MESSAGE

ORGANIZATION_HEADER = "X-Organization-Id"


async def authenticate(token: str, request) -> dict:
    requested = request.headers.get(ORGANIZATION_HEADER)
    interval = timedelta(seconds=settings.current().key_last_used_interval_seconds)
    # The lookup is blocking database work: keep it off the event loop.
    principal = await run_in_threadpool(keys.authenticate, token, requested, interval)
    if principal is None:
        raise OAuthResponseProblem(detail=UNAUTHENTICATED_MESSAGE)
    return {"sub": str(principal.user_id), "principal": principal}
