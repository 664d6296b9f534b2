"""The one error type a user should see: a bad config value, option or data file."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


class ConfigError(ValueError):
    """A value the user gave is not usable; the message names it and what is allowed."""


class RunError(RuntimeError):
    """A run that started could not go on (e.g. the disk is full); the message says what to do."""


def reject_unknown_settings(group: str, option: str, given, allowed) -> None:
    """ConfigError when `given` holds a setting that `group=option` does not take, listing what it takes."""
    extra = sorted(set(given) - set(allowed))
    if extra:
        takes = ", ".join(f"{group}.{p}" for p in allowed) or "no settings"
        raise ConfigError(f"{group}.{extra[0]} is not a setting of {group}={option}; it takes {takes}")


def exit_with(err: BaseException, code: int = 2) -> NoReturn:
    """Print `mlpkit: error: <message>` on stderr and exit; re-raise under HYDRA_FULL_ERROR=1."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"mlpkit: error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(code)
