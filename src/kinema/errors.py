"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class KinemaInputError(ValueError):
    """Bad input: the message names the limit that was broken (one line, no traceback)."""
