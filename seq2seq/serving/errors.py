"""A refused request, as every part of the server raises it (the app turns it into a JSON error response)."""


class RequestError(Exception):
    """A refused request: HTTP status, the field at fault ("body" for the whole body) and a message for people."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
