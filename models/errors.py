"""What the data layer reports; `sessions_api.errors` maps each to an HTTP answer."""


class DataError(Exception):
    """Base of the data layer's expected failures; the message is meant for people."""


class NotFound(DataError):
    """A referenced row does not exist (or is not visible to the caller)."""


class InvalidInput(DataError):
    """A value a caller supplied breaks a rule of the data model."""


class AccessDenied(DataError):
    """The caller may not act on the organization they selected."""
