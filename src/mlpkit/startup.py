"""Garbage collection held off while a command starts (train.py, predict.py).

Start-up (torch, Hydra, pandas, scikit-learn, the composed config) leaves about a million objects
that live until the process ends. CPython's collector walks every one of them at each full
collection, and five fall in the start-up of a default run: 0.4-0.5 s of its 2.6-3.7 s on the
2-core machines this project is built on. The commands turn the collector off in their first lines
(`gc.disable()`), say so with `held()`, and call `release()` when start-up is done (before the first
epoch, before the first row is predicted): what start-up left is frozen (`gc.freeze()`: kept out of
every later collection; whatever of it was already garbage stays, a few MB at most, once) and
collection goes on for what the run makes. A program that imports mlpkit is left as it is: without
`held()`, `release()` does nothing.
"""

from __future__ import annotations

import gc

_HELD = [False]


def held() -> None:
    """This command turned the collector off for its start-up (a no-op when the collector is on)."""
    _HELD[0] = not gc.isenabled()


def release() -> None:
    """Start-up is done: freeze what it left and collect again. Once; nothing unless `held()` was said."""
    if _HELD[0]:
        _HELD[0] = False
        gc.freeze()
        gc.enable()
