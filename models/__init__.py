"""SQLModel tables and the queries over them: the data layer of the Sessions API."""

from models.tables import ApiKey, Device, Membership, Organization, Role, SessionRecord, User

__all__ = ["ApiKey", "Device", "Membership", "Organization", "Role", "SessionRecord", "User"]
