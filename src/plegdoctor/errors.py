"""Errors that end a command with one clear line and exit code 2 (never a traceback)."""


class UserError(Exception):
    """Bad usage or unusable input: the CLI prints `pleg-doctor: <message>` and exits 2."""

    exit_code = 2


class InputError(UserError):
    """An input path or file that cannot be read at all."""
