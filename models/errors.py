"""What the data layer reports; `sessions_api.web.errors` maps each to an HTTP answer."""

# What an organization the caller may not see answers, exactly as one that does not exist.
NO_SUCH_ORGANIZATION = "No organization with this id exists among yours."


class DataError(Exception):
    """Base of the data layer's expected failures; the message is meant for people."""


class NotFound(DataError):
    """A referenced row does not exist (or is not visible to the caller)."""


class InvalidInput(DataError):
    """A value a caller supplied breaks a rule of the data model."""


class AccessDenied(DataError):
    """The caller may not act on the organization they selected (with a live key: `key_id`)."""

    def __init__(self, message: str = "", *, key_id: object = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class Forbidden(DataError):
    """The caller may not do this in the organization they act on; the message says why."""


class Refused(DataError):
    """A request the data layer turned down for a reason clients branch on (`code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Conflict(Refused):
    """Cannot be done now; may succeed later (no free device, too many live sessions)."""


def limit_reached(what: str, cap: int, setting: str) -> Conflict:
    """409 `limit_reached`: a cap that keeps one tenant from creating without end."""
    return Conflict("limit_reached", f"The limit of {cap} {what} is reached ({setting}); remove one first.")


class Throttled(Refused):
    """Too much at once from one caller or tenant (429 with `Retry-After`): retry later."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Gone(Refused):
    """What was asked for existed and no longer does (410): start over from the current state."""


class TooLarge(Refused):
    """More than a limit on size allows (413): an artifact, an upload."""


class RangeNotSatisfiable(DataError):
    """No range a `Range` header asks for starts within the file (416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"No range of the Range header starts within the file's {size} bytes.")
        self.size = size


class Unprocessable(Refused):
    """Cannot be done as asked; retrying unchanged will not help."""
