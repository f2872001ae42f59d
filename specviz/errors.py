"""The base of every error a user can cause and fix (bad input, not bugs).

The CLI prints these as one line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class SpecvizError(ValueError):
    """Bad input: the message names what is wrong and how to fix it."""
