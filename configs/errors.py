"""The one exception family the CLI turns into exit code 2 (bad input)."""


class InputError(Exception):
    """Bad user input: a file, field or value is at fault.

    The message is one line and names the file, field or value, so the CLI can
    print it without a traceback and exit with code 2.
    """
