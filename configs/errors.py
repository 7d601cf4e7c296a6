"""The one exception family the CLI turns into exit code 2 (bad input)."""


class InputError(Exception):
    """Bad user input: a file, field or value is at fault.

    The message is one line and names the file, field or value, so the CLI can
    print it without a traceback and exit with code 2.
    """


class JobFailed(Exception):
    """Work that ran and failed (a shard job): exit 1 with the message, which may span lines, and no traceback."""
