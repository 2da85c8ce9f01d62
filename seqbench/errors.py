"""User-facing errors: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class SeqbenchError(Exception):
    """A problem the user can fix (bad input, unknown name, missing file); no traceback is shown."""

    exit_code = 1


class UnknownNameError(SeqbenchError):
    """An unknown model, probe or dataset name; exit code 2 like a usage error."""

    exit_code = 2

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} '{name}'; valid {kind}s: {', '.join(sorted(valid)) or '(none)'}")


class DataError(SeqbenchError):
    """Malformed or unusable input data; the message names the file and line or value."""


class OptionError(SeqbenchError):
    """An unknown or malformed option key/value (e.g. ``--probe-set``); exit code 2 like a usage error."""

    exit_code = 2
