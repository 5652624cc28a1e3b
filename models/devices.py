"""The device fleet."""

from __future__ import annotations

from models.errors import InvalidInput
from models.tables import Device
from sessions_api import db

_LIMITS = {"platform": 32, "type": 32, "name": 200, "os_version": 64}


def add_device(platform: str, type: str, name: str, os_version: str) -> Device:
    values = {"platform": platform, "type": type, "name": name, "os_version": os_version}
    for field, value in values.items():
        value = value.strip()
        if not 1 <= len(value) <= _LIMITS[field]:
            raise InvalidInput(f"the device {field.replace('_', ' ')} must have 1 to {_LIMITS[field]} characters")
        values[field] = value
    with db.writing() as session:
        device = Device(**values)
        session.add(device)
    return device
