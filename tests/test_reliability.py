"""Reliability: fuzzed configs and CSV files never crash with a traceback, checkpoints survive
SIGKILL mid-write, and a damaged or foreign checkpoint is refused with a clear message."""

from __future__ import annotations

import csv
import io
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpkit.models.activations import ACTIVATIONS
from mlpkit.errors import ConfigError
from mlpkit.models.initializers import INITIALIZERS
from mlpkit.models.mlp import NORMS
from mlpkit.training.optim import OPTIMIZERS, SCHEDULERS

from conftest import compose_config, finished_run, process_env, train_in_process

REPO = Path(__file__).resolve().parents[1]
STATUSES = {"completed", "early_stopped", "diverged"}


# ---------------------------------------------------------------------------
# Fuzzed configs: compose with Hydra exactly as train.py does, then run what train.py runs.


def _clean_errors():
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # What the command line turns into a short message: ours, and Hydra's own for bad overrides.
    return (ConfigError, HydraException, OmegaConfBaseException)


def _number(*, allow_text: bool = True):
    options = [st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
               st.integers(-3, 300).map(str)]
    if allow_text:
        options.append(st.sampled_from(["abc", "''", "null", "[1]", "1e9999", "-0.0"]))
    return st.one_of(*options)


def _mostly(valid, bad):
    """Usually a valid value, sometimes a bad one: so that some cases train and some are refused."""
    return st.integers(0, 14).flatmap(lambda i: bad if i == 0 else valid)


overrides_strategy = st.fixed_dictionaries({
    "data.n_samples": _mostly(st.integers(30, 80).map(str), st.integers(-1, 29).map(str)),
    "data.noise": _mostly(st.floats(0, 1).map(repr), _number(allow_text=False)),
    "data.val_fraction": _mostly(st.floats(0.1, 0.4).map(repr), st.floats(-0.2, 1.2).map(repr)),
    "model.hidden": _mostly(st.lists(st.integers(1, 12), max_size=3), st.lists(st.integers(-2, 12), max_size=3))
    .map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
    "activation": _mostly(st.sampled_from(list(ACTIVATIONS)), st.just("bogus")),
    "init": _mostly(st.sampled_from(list(INITIALIZERS)), st.just("he")),
    "norm": _mostly(st.sampled_from(list(NORMS)), st.just("group")),
    "optimizer": _mostly(st.sampled_from(list(OPTIMIZERS)), st.just("adamx")),
    "optimizer.lr": _mostly(st.floats(1e-4, 10).map(repr), _number()),
    "scheduler": _mostly(st.sampled_from(list(SCHEDULERS)), st.just("warmup")),
    "regularization.dropout": _mostly(st.floats(0, 0.9).map(repr), st.floats(-0.5, 1.5).map(repr)),
    "regularization.l2": _mostly(st.floats(0, 0.1).map(repr), _number(allow_text=False)),
    "regularization.input_noise": _mostly(st.floats(0, 1).map(repr), st.floats(-1, 3).map(repr)),
    "trainer.batch_size": _mostly(st.integers(0, 100).map(str), st.integers(-2, -1).map(str)),
    "trainer.max_epochs": _mostly(st.integers(0, 2).map(str), st.just("-1")),
    "trainer.clip_grad_norm": _mostly(st.one_of(st.just("null"), st.floats(0.1, 5).map(repr)),
                                      st.floats(-1, 0).map(repr)),
    "seed": _mostly(st.integers(0, 2**31).map(str), st.integers(-5, -1).map(str)),
})


def test_fuzzed_config_trains_or_fails_cleanly(tmp_path):
    """Hypothesis draws configs; each trains or is refused with a message, and both outcomes occur."""
    from mlpkit.app.cli import train_from_config

    outcomes = {"trained": 0, "refused": 0}

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values=overrides_strategy)
    def case(values):
        overrides = ["data=moons", "trainer.progress=false", *[f"{k}={v}" for k, v in values.items()]]
        run_dir = tmp_path / f"run{sum(outcomes.values())}"
        try:
            cfg = compose_config(overrides)
            run_dir.mkdir()
            train_from_config(cfg, run_dir)
        except _clean_errors() as err:
            assert str(err).strip(), "an error must say what is wrong"
            outcomes["refused"] += 1
            return
        import json
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] in STATUSES
        outcomes["trained"] += 1

    case()
    assert outcomes["trained"] and outcomes["refused"], f"only one outcome was drawn: {outcomes}"


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**40, 10**40).map(str),
    st.sampled_from(["", "NaN", "nan", "abc", "1,5", "  3 ", "1e308", "-1e400", "0"]),
    st.text(max_size=4),
)
header_name = st.text(min_size=0, max_size=6)


@st.composite
def csv_files(draw):
    n_cols = draw(st.integers(1, 4))
    header = draw(st.lists(header_name, min_size=n_cols, max_size=n_cols))
    mostly_numeric = draw(st.booleans())
    n_rows = draw(st.integers(10, 40) if mostly_numeric else st.integers(0, 25))
    rows = []
    for i in range(n_rows):
        if mostly_numeric:
            row = [repr(draw(st.floats(-1e6, 1e6, allow_nan=False, width=32))) for _ in range(n_cols - 1)]
            row.append(str(draw(st.integers(0, 2))))
        else:
            row = draw(st.lists(cell, min_size=n_cols, max_size=n_cols))
        rows.append(row)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    target = draw(st.one_of(st.none(), st.none(), st.sampled_from(header), header_name))
    return buf.getvalue(), target


def test_fuzzed_csv_trains_or_fails_cleanly(tmp_path):
    """Hypothesis writes CSV files; each trains or is refused with a message, and both outcomes occur."""
    from mlpkit import MLP, Trainer, load_dataset

    outcomes = {"trained": 0, "refused": 0}

    @settings(max_examples=120, deadline=None)
    @given(spec=csv_files())
    def case(spec):
        text, target = spec
        path = tmp_path / f"data{sum(outcomes.values())}.csv"
        path.write_text(text, encoding="utf-8")
        try:
            data = load_dataset("csv", path=str(path), target=target)
        except ConfigError as err:
            assert str(err).strip()
            outcomes["refused"] += 1
            return
        assert torch.isfinite(data.X_train).all()
        model = MLP(data.in_dim, [4], data.out_dim)
        result = Trainer(max_epochs=1, batch_size=8, handle_signals=False).fit(model, data)
        assert result.status in STATUSES
        outcomes["trained"] += 1

    case()
    assert outcomes["trained"] and outcomes["refused"], f"only one outcome was drawn: {outcomes}"


# ---------------------------------------------------------------------------
# Atomic checkpoints

# One process imports torch once, then forks a writer per trial (each saving in a loop to its own file)
# and SIGKILLs it at a random moment once its first save is done: the import is paid once, not per trial.
KILLER = textwrap.dedent("""
    import os, random, signal, sys, time
    import torch
    sys.path.insert(0, {src!r})
    from mlpkit.training.checkpoint import save_checkpoint
    folder, trials = sys.argv[1], int(sys.argv[2])
    rng = random.Random(0)
    for trial in range(trials):
        path, marker = os.path.join(folder, "last%d.pt" % trial), os.path.join(folder, "ready%d" % trial)
        pid = os.fork()
        if pid == 0:  # the writer
            i = 0
            while True:
                save_checkpoint(path, {{"epoch": i, "model": {{"w": torch.full((512, 1024), float(i))}}}})
                if i == 0:
                    open(marker, "w").close()
                i += 1
        deadline = time.time() + 60
        while not os.path.exists(marker):
            assert time.time() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0), "the writer did not start"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside a later save, most likely
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
""")


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    from mlpkit.training.checkpoint import load_checkpoint

    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(src=str(REPO / "src")))
    subprocess.run([sys.executable, str(script), str(tmp_path), "8"], check=True, timeout=180)
    for trial in range(8):
        state = load_checkpoint(tmp_path / f"last{trial}.pt")  # never half-written
        w = state["model"]["w"]
        assert torch.all(w == w[0, 0]) and state["epoch"] == int(w[0, 0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


DAMAGES = ["truncated", "foreign_pickle", "not_torch"]


@pytest.fixture(scope="module")
def damaged_resumes(tmp_path_factory):
    """`python train.py resume=<run_dir>` on three copies of one finished run, each with a damaged last.pt
    (through train.py in this process, `train_in_process`): damage -> the Run."""
    import shutil

    root = tmp_path_factory.mktemp("damaged")
    original = finished_run(root / "original", ["data=moons", "data.n_samples=100", "model.hidden=[4]",
                                                "trainer.max_epochs=2", "trainer.progress=false"])
    runs = {}
    for damage in DAMAGES:
        run_dir = shutil.copytree(original, root / damage / "run")
        last = run_dir / "checkpoints" / "last.pt"
        if damage == "truncated":
            last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
        elif damage == "foreign_pickle":
            with open(last, "wb") as fh:
                torch.save({"format": "mlpkit-checkpoint-1", "model": _Evil()}, fh)
        else:
            last.write_bytes(pickle.dumps({"epoch": 1}))
        runs[damage] = train_in_process([f"resume={run_dir}"], root / damage)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_resume_refuses_a_damaged_checkpoint(damaged_resumes, damage):
    run = damaged_resumes[damage]
    assert run.returncode == 2, run.describe()
    assert "Traceback" not in run.output, run.describe()
    assert "checkpoint" in run.stderr and "last.pt" in run.stderr, run.describe()
    assert not (run.cwd / "PWNED").exists()  # weights_only=True: no pickled code ran


SAME_SECOND = ["data=moons", "data.n_samples=100", "model.hidden=[4]", "trainer.max_epochs=1", "trainer.progress=false"]


def _three_at_once(cwd: Path):
    """Three `python train.py` started together in one working directory."""
    cwd.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, str(REPO / "train.py"), *SAME_SECOND], cwd=cwd, env=process_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    return [(p.wait(timeout=180), p.stderr.read()) for p in procs]


@pytest.mark.slow
def test_runs_started_in_the_same_second_never_share_a_directory(tmp_path):
    cwd = tmp_path / "same-second"
    for code, stderr in _three_at_once(cwd):
        assert code == 0, stderr
    metrics = sorted((cwd / "outputs" / "runs").glob("*/*/metrics.json"))
    assert len(metrics) == 3  # three directories (a _2, _3 suffix when the second is the same)
    assert len({m.parent for m in metrics}) == 3
