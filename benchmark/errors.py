"""One exception type for bad input; the CLI prints it as a single line and exits non-zero."""


class BenchmarkError(Exception):
    """A user-facing error: bad config, missing or malformed data, unknown method."""


class DataError(BenchmarkError):
    """A data file is missing or malformed (the message names the path and line)."""
