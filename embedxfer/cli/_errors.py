"""The command line's own error: a bad input, reported as one line."""


class CLIError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""
