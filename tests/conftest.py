"""pytest's side of the suite: the shared helpers (tests/support.py, imported from here as
`from conftest import train, ...`), one torch thread in-process, and the scheduling on pytest-xdist.

The suite runs on pytest-xdist (`-n auto --dist loadgroup` in pyproject.toml). A run that several tests
read is a module- or session-scoped fixture of their module: such tests are sent to one worker
(`xdist_group`, named after the fixture), so it is made once. `-n 0` runs it in one process.
"""

from __future__ import annotations

import gc
import os

import pytest

from support import *  # noqa: F401,F403  (the names tests import from conftest)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """`python predict.py ARGS` in this process (imports paid once), in tmp_path: a CompletedProcess with
    the exit code, stdout and stderr."""
    import subprocess

    from mlpkit.predict import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def call(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)
    return call


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """In-process training is tiny: one thread is faster and avoids contention on two cores."""
    import torch

    threads = torch.get_num_threads()
    TORCH_THREADS[:] = [threads]  # noqa: F405  (support's: a run in-process may ask for torch's own count)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# Scheduling on pytest-xdist


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A test that reads a module- or session-scoped fixture of the suite (a trained run, a sweep, a
    cluster) runs on that fixture's worker (`--dist loadgroup`), so the fixture is made once; tests
    marked slow go first, so that the quick ones fill the workers' gaps at the end."""
    for item in items:
        for name in item.fixturenames:
            defs = getattr(item, "_fixtureinfo").name2fixturedefs.get(name)
            if defs and defs[-1].scope != "function" and defs[-1].baseid and not name.startswith("_"):
                item.add_marker(pytest.mark.xdist_group(f"{defs[-1].baseid}::{name}"))
                break
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        group_node_ids(items)


def group_node_ids(items):
    """What `--dist loadgroup` does on each worker, done here so that pytest 9 keeps it: the group's name
    after an `@` at the end of the test's id, from which the controller learns the group. pytest-xdist
    (3.8) writes it into `item._nodeid`, which pytest 9 no longer reads (an id is `item._id`): without
    this, every worker that runs a test of a group makes the group's fixture again."""
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if not names or "@" in item.nodeid.rpartition("]")[2]:
            continue
        nodeid = f"{item.nodeid}@{'_'.join(names)}"
        if isinstance(getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(nodeid)
        else:
            item._nodeid = nodeid


def pytest_collection_finish(session):
    """What the worker holds once the tests are collected (torch, Hydra, pandas, scikit-learn, every test
    module: over a million objects) lives to the end: frozen, so that the collector stops walking it at
    each full collection (36 of them, 12 s of each worker's time in a run of the suite before this)."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session, exitstatus):
    """No test collected is a failure (exit 1), not pytest's exit 5: a CI run must never pass by running nothing."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core this process may use, and at least 2. Most runs happen in the test's own
    process now, so the suite is bound by the CPU: more workers than cores took longer and more CPU (the
    README's Tests section has the figures)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(2, cores)
