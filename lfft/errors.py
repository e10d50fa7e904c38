"""One exception family for user errors: the CLI maps these to ``error: ...`` and exit 1."""

from __future__ import annotations


class LfftError(Exception):
    """A problem the user can fix (bad input, bad option, missing file). Shown as one line."""


class SchemaError(LfftError):
    """An artifact does not have the columns or types its stage expects."""


class ConfigError(LfftError):
    """A config file or option is invalid (unknown key, wrong type)."""


class NoUsableRows(LfftError):
    """A stage found nothing to work with."""
