"""The callback API a user writes against (mlpkit.Callback, mlpkit.TrainState) and the Python API's
reproducibility: the README's example gives the same curves in two fresh processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from mlpkit import MLP, Callback, EarlyStopping, TrainState, Trainer, load_dataset

from conftest import PYTHON, SUBPROCESS_ENV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", n_samples=120, noise=0.2, seed=0)


def _trainer(**kwargs) -> Trainer:
    return Trainer(optimizer="adam", lr=1e-2, batch_size=32, device="cpu", handle_signals=False, **kwargs)


class Recorder(Callback):
    """Keeps what it is told at each epoch's end."""

    def __init__(self):
        self.seen = []
        self.steps = 0
        self.fit_ends = 0

    def on_step_end(self, trainer, state, loss):
        self.steps += 1
        assert isinstance(loss, torch.Tensor)

    def on_epoch_end(self, trainer, state):
        self.seen.append((state.epoch, state.step, len(state.history["val_loss"]), state.scalars["loss/val"],
                          trainer.best.epoch, state.status))

    def on_fit_end(self, trainer, state):
        self.fit_ends += 1


def test_a_user_callback_sees_each_epoch_with_its_state(moons):
    rec = Recorder()
    result = _trainer(max_epochs=4, callbacks=[rec]).fit(MLP(moons.in_dim, [8], moons.out_dim), moons)
    steps = result.extra["steps_per_epoch"]
    assert [s[:3] for s in rec.seen] == [(e, e * steps, e) for e in range(1, 5)]
    assert [s[3] for s in rec.seen] == result.history["val_loss"]
    assert all(s[4] == result.history["val_loss"].index(min(result.history["val_loss"][:s[0]])) + 1
               for s in rec.seen)  # the best epoch so far, already updated
    assert all(s[5] == "running" for s in rec.seen)
    assert rec.steps == 4 * steps and rec.fit_ends == 1


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, state: TrainState):
        if state.epoch == self.epoch:
            state.stop("early_stopped", f"stopped by the user at epoch {state.epoch}")


def test_a_callback_stops_the_run_by_setting_the_status(moons, tmp_path):
    after = Recorder()
    result = _trainer(max_epochs=20, run_dir=tmp_path, callbacks=[StopAt(3), after]).fit(
        MLP(moons.in_dim, [8], moons.out_dim), moons)
    assert (result.status, result.epochs_run, result.message) == ("early_stopped", 3, "stopped by the user at epoch 3")
    assert len(result.history["train_loss"]) == 3 and "accuracy" in result.test
    assert after.seen[-1][5] == "early_stopped"  # later callbacks still see the epoch that stopped the run
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3


class Counter(Callback):
    """Counts epochs across a resume through its state_dict."""

    def __init__(self):
        self.count = 0

    def on_epoch_end(self, trainer, state):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_callback_state_is_saved_in_last_pt_and_restored_on_resume(moons, tmp_path):
    first = Counter()
    _trainer(max_epochs=3, run_dir=tmp_path, callbacks=[first]).fit(MLP(moons.in_dim, [8], moons.out_dim), moons)
    last = tmp_path / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)[first.state_key] == {"count": 3}
    second = Counter()
    result = _trainer(max_epochs=5, run_dir=tmp_path, callbacks=[second]).fit(
        MLP(moons.in_dim, [8], moons.out_dim), moons, resume_from=last)
    assert result.epochs_run == 5 and second.count == 5
    assert torch.load(last, weights_only=True)[second.state_key] == {"count": 5}


def test_early_stopping_state_keeps_its_checkpoint_key(moons, tmp_path):
    es = EarlyStopping(patience=100)
    _trainer(max_epochs=2, run_dir=tmp_path, callbacks=[es], scheduler="step").fit(
        MLP(moons.in_dim, [8], moons.out_dim), moons)
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["early_stopping"] == {"wait": es.wait} and "last_epoch" in last["scheduler"]


def test_mlp_seed_draws_the_same_weights_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a, b = MLP(3, [5], 2, seed=7), MLP(3, [5], 2, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.manual_seed(7)
    drawn = MLP(3, [5], 2, seed=None)  # the global RNG, as train.py seeds it
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), drawn.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), MLP(3, [5], 2, seed=8).parameters()))


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using mlpkit from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_gives_the_same_curves_in_fresh_processes():
    code = _readme_example() + "\nimport json\nprint('HISTORY', json.dumps({k: v for k, v in " \
                               "result.history.items() if k != 'epoch_seconds'}))\n"
    runs = []
    for _ in range(2):
        proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **SUBPROCESS_ENV})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.split("HISTORY ", 1)[1]))
    assert runs[0] == runs[1]
    assert len(runs[0]["val_loss"]) > 1
