"""Garbage collection held off while a command starts (train.py, predict.py).

Start-up (torch, Hydra, pandas, scikit-learn, the composed config) leaves about a million objects
that live until the process ends. CPython's collector walks every one of them at each full
collection, and five fall in the start-up of a default run: 0.4-0.5 s of its 2.6-3.7 s on the
2-core machines this project is built on. Run as programs, the commands turn the collector off before
their imports (`gc.disable()` under `if __name__ == "__main__"`), say so with `held()`, and call
`release()` when start-up is done (before the first epoch, once predict.py has loaded the run, when a
sweep's launcher starts its jobs): what start-up left is frozen (`gc.freeze()`: kept out of every later
collection; whatever of it was already garbage stays, 1-2 MB of peak memory, once) and collection goes
on for what the run makes. A program that imports mlpkit, or train.py as a module, is left as it is:
without `held()`, `release()` does nothing.
"""

from __future__ import annotations

import gc

_HELD = [False]  # the collector is off for start-up, until release()
_SAID = [False]  # held() was said in this process: its start-up is the command's, not a sweep job's


def held() -> None:
    """This command turned the collector off for its start-up (a no-op when the collector is on)."""
    _SAID[0] = True
    _HELD[0] = not gc.isenabled()


def hold_for_job() -> None:
    """A sweep job in a process of its launcher (submitit's, joblib's, Ray's), which imports torch, pandas and
    scikit-learn for its run as train.py does: the collector held off until release(), once per process;
    nothing in a process where held() was said (train.py's, whose start-up is held already)."""
    if not _SAID[0] and gc.isenabled():
        gc.disable()
        held()


def release() -> None:
    """Start-up is done: freeze what it left and collect again. Once; nothing unless `held()` was said."""
    if _HELD[0]:
        _HELD[0] = False
        gc.freeze()
        gc.enable()
