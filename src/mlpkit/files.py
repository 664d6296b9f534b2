"""Writing files whole: a temp file beside the target, fsync, rename; with the permissions the user's
umask gives a plain open(). Every file a run or predict.py writes goes through here."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else set and put back."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call write(fh) on a temp file beside `path`, then rename it over `path`.

    A process killed mid-write leaves the previous file whole: rename is atomic. The file gets the
    permissions a plain open() would give it (0o666 less the umask), not mkstemp's 0o600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def umask_mode() -> int:
    """The mode a plain open() gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


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


def runs_inside(folder: Path, marker: str) -> Tuple[str, Optional[Path]]:
    """(`holds 2 runs (0_seed=1, 1_seed=2), not one run`, the first run's path) for a folder whose subfolders
    are runs (each holding `marker`, e.g. metrics.json), as a sweep's folder is; ("", None) for any other."""
    try:
        runs = sorted(Path(folder, p.relative_to(folder).parts[0]) for p in Path(folder).glob(f"*/{marker}"))
    except (OSError, ValueError):
        runs = []
    if not runs:
        return "", None
    names = ", ".join(r.name for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    return f"holds {len(runs)} run{'s' if len(runs) > 1 else ''} ({names}), not one run", runs[0]
