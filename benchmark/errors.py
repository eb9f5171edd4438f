"""Exception types for bad input; the CLI prints them as a single line and exits with status 2."""


class BenchmarkError(Exception):
    """A user-facing error: bad config, missing or malformed data, unknown method."""


class DataError(BenchmarkError):
    """A data file is missing or malformed (the message names the path and line)."""


class MethodError(BenchmarkError):
    """A method's own code raised while the harness called it: the message names the method and
    the phase (import, init, fit, score, rank); the original exception is the ``__cause__``."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a multi-line message is joined with spaces)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
