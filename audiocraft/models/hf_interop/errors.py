"""The one error type of the transformers interop: a model that has no transformers counterpart."""


class NotConvertibleError(ValueError):
    """Raised when a model cannot be expressed in the other library's format; the message says why."""
