"""The one exception type that the CLI turns into a clean one-line error."""


class FactoryError(Exception):
    """A user-facing error: bad input, missing model, refused card. Printed without a traceback."""
