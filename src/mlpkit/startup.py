"""Garbage collection held off while a command starts (train.py, predict.py).

Start-up (torch, Hydra, pandas, scikit-learn, the composed config) leaves about a million objects
that live until the process ends. CPython's collector walks every one of them at each full
collection, and five fall in the start-up of a default run: 0.4-0.5 s of its 2.6-3.7 s on the
2-core machines this project is built on. Run as programs, the commands call `hold()` before their
heavy imports (train.py first in `_main`, predict.py under `if __name__ == "__main__"`, a sweep job in a
process of its launcher when it starts) and `release()` when start-up is done (before the first epoch,
once predict.py has loaded the run, when a sweep's launcher starts its jobs): what start-up left is frozen
(`gc.freeze()`: kept out of every later collection; whatever of it was already garbage stays, 1-2 MB of
peak memory, once) and collection goes on for what the run makes. Once per process: a launcher's process
that runs several jobs holds it for the first. A program that imports mlpkit, or train.py as a module,
is left as it is: without `hold()`, `release()` does nothing.
"""

from __future__ import annotations

import gc

# this process's start-up: "" (not held), "held" (the collector is off until release()), "released"
_STATE = [""]


def hold() -> None:
    """Turn the collector off for this process's start-up: train.py and predict.py, or a sweep job in a process
    of its launcher (submitit's, joblib's, Ray's), which imports torch, pandas and scikit-learn for its run as
    train.py does. Once per process; nothing when the collector is off already (the program's own choice)."""
    if not _STATE[0] and gc.isenabled():
        gc.disable()
        _STATE[0] = "held"


def release() -> None:
    """Start-up is done: freeze what it left and collect again. Once; nothing unless `hold()` turned it off."""
    if _STATE[0] == "held":
        _STATE[0] = "released"
        gc.freeze()
        gc.enable()
