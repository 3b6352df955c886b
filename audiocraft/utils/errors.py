"""Exception raised for invalid arguments at AudioCraft-compatible entry points."""


class InvalidArgumentError(ValueError, AssertionError):
    """A bad argument: a `ValueError` with a message saying what to do.

    AudioCraft reports these cases with `assert` statements, so code written against it (its own
    unit tests included) catches `AssertionError`; deriving from both keeps that code working
    while `except ValueError` works too. Unlike an assert, the check survives `python -O`.
    """
