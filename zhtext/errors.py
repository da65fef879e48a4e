"""The one exception type the CLI turns into a one-line error message."""


class ZhtextError(Exception):
    """A user-facing error: bad input, missing file, unusable model.

    The CLI prints ``zhtext: error: <message>`` on one line and exits non-zero;
    library callers can catch it like any exception.
    """
