"""Errors a user can cause: scripts print these without a traceback; anything else is a bug."""


class UserError(Exception):
    """Base of every error a user can fix by changing a config, a file or a flag."""


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message names the key."""


class DataError(UserError, ValueError):
    """A dataset that cannot be read as given; the message names the file."""
