"""One hierarchy for the errors a user can cause; anything else is a bug and keeps its traceback."""


class DedupError(Exception):
    """Base of every error caused by input or settings; the CLI prints it as one line."""


class ConfigError(DedupError, ValueError):
    """A setting is out of range or of the wrong kind."""


class InputError(DedupError, ValueError):
    """A file or record cannot be read; the message names the file, line and field."""
