"""Handlers of the Devices tag."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from sessions_api.handlers.listing import list_body
from sessions_api.models import devices
from sessions_api.models.paging import cursor


def listDevices(
    token_info: dict[str, Any],
    limit: int = 100,
    before: str | None = None,
    platform: str | None = None,
    osVersion: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    filters = devices.DeviceFilters(platform=platform, os_version=osVersion, state=state)
    return list_body(devices.list_page(limit, cursor(before), filters), device_json)


def device_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "platform": row.platform,
        "type": row.type,
        "name": row.name,
        "osVersion": row.os_version,
        "state": row.state,
        "createdAt": row.created_at,
    }
