"""Handlers of the Devices tag."""

from __future__ import annotations

from sqlalchemy import Row

from handlers.listing import cursor, list_body
from models import devices


def listDevices(
    token_info: dict, limit: int = 100, before: str | None = None, platform: str | None = None,
    osVersion: str | None = None, state: str | None = None,
) -> dict:
    filters = devices.DeviceFilters(platform=platform, os_version=osVersion, state=state)
    return list_body(devices.list_page(limit, cursor(before), filters), device_json)


def device_json(row: Row) -> dict:
    return {
        "id": row.id,
        "platform": row.platform,
        "type": row.type,
        "name": row.name,
        "osVersion": row.os_version,
        "state": row.state,
        "createdAt": row.created_at,
    }
