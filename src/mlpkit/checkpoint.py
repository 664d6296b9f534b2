"""Checkpoints and metrics files, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict

import torch

from mlpkit.errors import ConfigError, RunError

FORMAT = "mlpkit-checkpoint-1"


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call write(fh) on a temp file beside `path`, then rename it over `path`.

    A process killed mid-write leaves the previous file whole: rename is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """torch.save `state` (plain containers and tensors only) atomically; the temp files of a save that
    was killed go first. RunError when it cannot be written (the previous file stays whole)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        atomic_write(path, lambda fh: torch.save({"format": FORMAT, **state}, fh))
    except (OSError, RuntimeError) as err:
        full = getattr(err, "errno", None) == errno.ENOSPC or "unexpected pos" in str(err) or "write" in str(err)
        reason = "the disk is full" if full else (getattr(err, "strerror", None) or str(err).splitlines()[0])
        raise RunError(f"could not write {path}: {reason}; it still holds the last good checkpoint") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load an mlpkit checkpoint with weights_only=True: no pickled code runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the message below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, not a torch file at all
        raise ConfigError(f"{path} is not a readable mlpkit checkpoint ({type(err).__name__}); it is damaged "
                          "or was not written by mlpkit") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an mlpkit checkpoint (expected format {FORMAT!r})")
    return state


def _finite(obj: Any) -> Any:
    """NaN and inf become null, so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, data: Dict[str, Any]) -> None:
    """Write `data` as indented strict JSON, atomically."""
    text = json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text), mode="w")
