"""Errors a user can cause: scripts print these without a traceback; anything else is a bug."""
import importlib


class UserError(Exception):
    """Base of every error a user can fix by changing a config, a file or a flag."""


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message names the key."""


class DataError(UserError, ValueError):
    """A dataset that cannot be read as given; the message names the file."""


class StorageError(UserError, OSError):
    """A file that could not be written whole (a full disk, a read-only place); the message
    names the file and the space left where it goes."""


class MissingExtra(UserError, ImportError):
    """An optional dependency a feature needs is not installed; the message names the extra."""


def require(*modules: str, extra: str, what: str) -> None:
    """Raise MissingExtra unless every module imports: `what` needs them, `extra` installs
    them (pip install 'ssd_nobias[extra]')."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(f"{what} needs {' and '.join(missing)}, which is not installed: "
                           f"pip install 'ssd_nobias[{extra}]'")


class Stopped(Exception):
    """A run that stopped on request (a signal) after saving what it must: not a failure of
    the code, not the user's mistake; scripts exit with `code` (128 + the signal number)."""

    code = 1


def mxnet_reason(err: Exception) -> str:
    """The line of an MXNet error that says what is wrong, without its C++ stack trace."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Check failed" in line or line.startswith(("MXNetError", "ValueError")):
            return line
    useful = [line for line in lines if not line.startswith(("Traceback", "File ", "[bt]"))]
    return useful[-1] if useful else type(err).__name__
