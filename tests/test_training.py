"""Training behaviour through the Python API (no Hydra): Trainer, EarlyStopping, load_dataset, MLP."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch

from mlpkit import MLP, ConfigError, Dataset, EarlyStopping, FitResult, Trainer, load_checkpoint, load_dataset
from mlpkit.training.tblog import TensorBoard
from mlpkit.training.trainer import resolve_device

from conftest import PYTHON, SUBPROCESS_ENV


class RecordingLogger:
    """Stands in for TensorBoardLogger: records every call."""

    def __init__(self):
        self.scalar_calls, self.epoch_scalars, self.other = [], [], []

    def scalar(self, tag, value, step):
        self.scalar_calls.append((tag, value, step))

    def scalars(self, values, step):
        self.epoch_scalars.append((dict(values), step))

    def histogram(self, *args):
        self.other.append(("histogram", args[0]))

    def figure(self, tag, fig, step):
        import matplotlib.pyplot as plt

        plt.close(fig)
        self.other.append(("figure", tag))

    def layout(self, *args):
        pass

    def hparams(self, *args):
        pass

    def close(self):
        pass

    def flush(self):
        pass

    def steps(self, tag="loss/train_step"):
        return [s for t, _, s in self.scalar_calls if t == tag]


def _model(data, hidden=(8,), seed=0, **kwargs):
    torch.manual_seed(seed)
    return MLP(data.in_dim, list(hidden), data.out_dim, **kwargs)


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", n_samples=200, noise=0.2)


def _fresh(data: Dataset) -> Dataset:
    """A copy (fit moves tensors to the device in place)."""
    return Dataset(**{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in data.__dict__.items()})


# ---------------------------------------------------------------------------


def test_fit_returns_a_sensible_fit_result(moons, tmp_path):
    model = _model(moons, hidden=(16, 16))
    result = Trainer(optimizer="adam", lr=1e-2, max_epochs=30, batch_size=32, device="cpu",
                     run_dir=tmp_path).fit(model, _fresh(moons))
    assert isinstance(result, FitResult)
    assert result.status == "completed" and result.epochs_run == 30
    h = result.history
    assert len(h["train_loss"]) == len(h["val_loss"]) == len(h["train_accuracy"]) == len(h["val_accuracy"]) == 30
    assert all(math.isfinite(v) for v in h["train_loss"] + h["val_loss"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert 1 <= result.best_epoch <= 30
    assert result.best_val_loss == pytest.approx(min(h["val_loss"]))
    assert result.best_val_loss == pytest.approx(h["val_loss"][result.best_epoch - 1])
    assert set(result.test) >= {"loss", "accuracy"}
    assert result.test["accuracy"] > 0.8, "moons with an MLP should be easy"
    assert result.seconds > 0
    json.dumps(result.as_dict())  # what metrics.json is made of
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert isinstance(state, dict)
        assert load_checkpoint(tmp_path / "checkpoints" / name)["epoch"] in range(1, 31)


def test_regression_fit_reports_rmse_and_r2():
    data = load_dataset("sine", n_samples=300)
    result = Trainer(optimizer="adam", lr=1e-2, max_epochs=40, batch_size=32, device="cpu").fit(
        _model(data, hidden=(32, 32), activation="tanh"), data)
    assert result.status == "completed"
    assert "train_accuracy" not in result.history
    assert set(result.test) >= {"loss", "rmse", "r2"}
    assert result.test["r2"] > 0.5 and result.test["rmse"] > 0


@pytest.mark.parametrize("batch_size, expected", [(0, 1), (1, None), (7, None), (10_000, 1)])
def test_steps_per_epoch_follow_batch_size(moons, batch_size, expected):
    n = len(moons.X_train)
    expected = expected or math.ceil(n / batch_size)
    logger = RecordingLogger()
    Trainer(optimizer="sgd", lr=0.05, max_epochs=2, batch_size=batch_size, log_every_n_steps=1, device="cpu",
            logger=logger, callbacks=[TensorBoard(histogram_every=0, boundary_every=0)]).fit(_model(moons), _fresh(moons))
    assert logger.steps() == list(range(1, 2 * expected + 1))


@pytest.mark.parametrize("batch_size, max_steps, max_epochs, expected", [
    (16, 25, 50, None),   # the budget ends it: the epoch in which step 25 falls is the last
    (16, 10_000, 4, 4),   # max_epochs first
    (0, 3, 50, 3),        # full batch: one step an epoch
    (10_000, 1, 50, 1),
])
def test_max_steps_ends_the_run_with_the_epoch_that_reaches_it(moons, batch_size, max_steps, max_epochs, expected):
    steps = 1 if batch_size in (0, 10_000) else math.ceil(len(moons.X_train) / batch_size)
    expected = expected or math.ceil(max_steps / steps)
    kwargs = dict(optimizer="adam", lr=1e-2, batch_size=batch_size, device="cpu", seed=1, scheduler="cosine",
                  log_every_n_steps=1)
    logger, lines = RecordingLogger(), []
    budget = Trainer(max_epochs=max_epochs, max_steps=max_steps, logger=logger, log=lines.append,
                     callbacks=[TensorBoard(histogram_every=0, boundary_every=0)], **kwargs)
    result = budget.fit(_model(moons), _fresh(moons))
    assert result.epochs_run == expected and budget.max_epochs == expected and budget.epochs_asked == max_epochs
    assert logger.steps() == list(range(1, expected * steps + 1))
    assert result.extra["max_steps_epochs"] == math.ceil(max_steps / steps)
    said = [line for line in lines if line.startswith("trainer.max_steps=")]
    assert said == ([f"trainer.max_steps={max_steps}: {steps} steps an epoch, so {expected} epochs "
                     f"(trainer.max_epochs={max_epochs})"] if expected < max_epochs else [])
    # the same run as one asked for that many epochs: the cosine spans the run's epochs, not max_epochs
    plain = Trainer(max_epochs=expected, **kwargs).fit(_model(moons), _fresh(moons))
    for key in ("train_loss", "val_loss", "lr"):
        assert result.history[key] == plain.history[key], key
    assert "max_steps_epochs" not in plain.extra


def test_same_seed_same_history_different_seed_different(moons):
    def fit(seed):
        torch.manual_seed(seed)
        model = MLP(moons.in_dim, [8], moons.out_dim, dropout=0.2)
        return Trainer(optimizer="sgd", lr=0.1, max_epochs=3, batch_size=16, input_noise=0.05, seed=seed,
                       device="cpu").fit(model, _fresh(moons)).history

    a, b, c = fit(1), fit(1), fit(2)
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert a["train_loss"] != c["train_loss"]


def _flipped_val(data: Dataset) -> Dataset:
    """Val labels flipped: the better the model fits train, the worse its val loss."""
    d = _fresh(data)
    d.X_val, d.y_val = d.X_train.clone(), 1 - d.y_train.clone()
    return d


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_stops_and_restore_best_keeps_the_best_weights(moons, restore_best):
    patience = 2
    data = _flipped_val(moons)
    kwargs = dict(optimizer="sgd", lr=0.5, batch_size=0, device="cpu", seed=0)
    model = _model(data)
    es = EarlyStopping(monitor="val_loss", mode="min", patience=patience, restore_best=restore_best)
    result = Trainer(max_epochs=50, callbacks=[es], **kwargs).fit(model, data)
    assert result.status == "early_stopped", result.message
    assert result.epochs_run == result.best_epoch + patience + 1 < 50
    assert len(result.history["val_loss"]) == result.epochs_run
    assert result.best_val_loss == pytest.approx(min(result.history["val_loss"]))

    # the same training stopped at the best epoch, and at the last one
    at_best = _model(data)
    Trainer(max_epochs=result.best_epoch, **kwargs).fit(at_best, _flipped_val(moons))
    at_last = _model(data)
    Trainer(max_epochs=result.epochs_run, **kwargs).fit(at_last, _flipped_val(moons))
    kept = at_best if restore_best else at_last
    for (k, v), (_, w) in zip(model.state_dict().items(), kept.state_dict().items()):
        torch.testing.assert_close(v, w, msg=f"{k} differs from the expected epoch's weights")
    # test metrics are those of the kept model
    expected = Trainer(device="cpu").test_metrics(kept, data)
    assert result.test["loss"] == pytest.approx(expected["loss"])


def test_early_stopping_mode_max_on_accuracy(moons):
    es = EarlyStopping(monitor="val_accuracy", mode="max", patience=1, restore_best=True)
    result = Trainer(optimizer="sgd", lr=0.5, batch_size=0, max_epochs=40, callbacks=[es],
                     device="cpu").fit(_model(_flipped_val(moons)), _flipped_val(moons))
    assert result.status == "early_stopped"
    assert result.best_val_accuracy == pytest.approx(max(result.history["val_accuracy"]))


def test_divergence_is_a_status_not_an_exception(tmp_path):
    from mlpkit import TensorBoardLogger

    data = load_dataset("regression", n_samples=200)
    logger = TensorBoardLogger(tmp_path)
    try:
        result = Trainer(optimizer="sgd", lr=5.0, max_epochs=20, batch_size=64, device="cpu", logger=logger,
                         run_dir=tmp_path).fit(_model(data), data)
    finally:
        logger.close()
    assert result.status == "diverged"
    assert result.epochs_run < 20
    assert len(result.history["train_loss"]) == result.epochs_run
    assert all(math.isfinite(v) for v in result.history["train_loss"])
    assert "lr" in result.message


def test_batch_norm_with_a_one_row_last_batch_trains():
    data = load_dataset("moons", n_samples=93)  # 65 train rows: batches of 64 leave one row
    assert len(data.X_train) == 65
    result = Trainer(max_epochs=1, batch_size=64, device="cpu").fit(_model(data, norm="batch"), data)
    assert result.status == "completed" and result.epochs_run == 1
    assert all(math.isfinite(v) for v in result.history["train_loss"])


def test_batch_norm_with_batches_of_one_row_is_refused_saying_why():
    data = load_dataset("moons", n_samples=93)
    with pytest.raises(ConfigError, match=r"norm=batch needs at least 2 rows per batch.*trainer.batch_size >= 2"):
        Trainer(max_epochs=1, batch_size=1, device="cpu").fit(_model(data, norm="batch"), data)


def test_resume_continues_exactly(moons, tmp_path):
    # (a schedule that does not depend on max_epochs: the first leg stops early by max_epochs here)
    kwargs = dict(optimizer="adam", lr=1e-2, batch_size=16, device="cpu", seed=3, scheduler="step",
                  scheduler_params={"step_size": 2, "gamma": 0.5}, input_noise=0.05)

    def model():
        torch.manual_seed(3)
        return MLP(moons.in_dim, [8], moons.out_dim, dropout=0.2)

    full = Trainer(max_epochs=6, **kwargs).fit(model(), _fresh(moons))
    torch.manual_seed(123)  # whatever the global RNG did in between
    first = Trainer(max_epochs=3, run_dir=tmp_path, **kwargs)
    first.fit(model(), _fresh(moons))
    torch.manual_seed(999)
    second = Trainer(max_epochs=6, run_dir=tmp_path, **kwargs)
    resumed = second.fit(model(), _fresh(moons), resume_from=tmp_path / "checkpoints" / "last.pt")
    assert resumed.epochs_run == 6
    for key in ("train_loss", "val_loss", "lr"):
        assert resumed.history[key] == pytest.approx(full.history[key], rel=1e-6, abs=1e-9), key
    assert resumed.test.pop("confusion_matrix") == full.test.pop("confusion_matrix")
    assert resumed.test == pytest.approx(full.test, rel=1e-6)


@pytest.mark.parametrize("has_cuda", [False, True])
def test_device_auto_follows_whether_cuda_is_present(monkeypatch, has_cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(has_cuda))
    assert resolve_device("auto") == torch.device("cuda" if has_cuda else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if has_cuda:
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(ConfigError, match="trainer.device=cuda:1 but only 1 CUDA device"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ConfigError, match="trainer.device=cuda but no CUDA device"):
            Trainer(device="cuda")
    with pytest.raises(ConfigError, match="trainer.device='gpu' is not known"):
        resolve_device("gpu")


@pytest.mark.slow
def test_mlpkit_imports_without_hydra():
    code = ("import sys, mlpkit\n"
            "from mlpkit import MLP, Trainer, load_dataset\n"
            "data = load_dataset('xor')\n"
            "Trainer(max_epochs=1, device='cpu').fit(MLP(data.in_dim, [4], data.out_dim), data)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'hydra')\n"
            "print(bad)\n"
            "assert not bad, bad\n")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **SUBPROCESS_ENV})
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# What the logged numbers mean


def test_logged_gradient_norm_lr_and_accuracy_mean_what_they_say(moons):
    data = _fresh(moons)
    model = _model(data, hidden=(8,))
    init = _model(data, hidden=(8,))  # the same initial weights
    # the expected first-epoch gradient norms: full batch, so the only step is at the initial weights
    loss = torch.nn.BCEWithLogitsLoss()(init(data.X_train), data.y_train)
    loss.backward()
    expected = [lin.weight.grad.norm().item() for lin in init.linears]

    logger = RecordingLogger()
    result = Trainer(optimizer="sgd", lr=0.2, batch_size=0, max_epochs=3, scheduler="step",
                     scheduler_params={"step_size": 1, "gamma": 0.5}, device="cpu", logger=logger,
                     callbacks=[TensorBoard(histogram_every=0, boundary_every=0)]).fit(model, data)
    by_epoch = {step: values for values, step in logger.epoch_scalars}
    assert sorted(by_epoch) == [1, 2, 3]
    assert [by_epoch[1][f"grads/layer_{i}"] for i in range(2)] == pytest.approx(expected, rel=1e-4)
    # lr per epoch: the rate used during that epoch
    assert [by_epoch[e]["lr"] for e in (1, 2, 3)] == pytest.approx([0.2, 0.1, 0.05])
    # accuracy/val after the last epoch is the final model's accuracy on the val split
    with torch.no_grad():
        model.eval()
        val_acc = ((model(data.X_val) > 0).float() == data.y_val).float().mean().item()
        test_acc = ((model(data.X_test) > 0).float() == data.y_test).float().mean().item()
    assert by_epoch[3]["accuracy/val"] == pytest.approx(val_acc)
    assert result.history["val_accuracy"][-1] == pytest.approx(val_acc)
    assert result.test["accuracy"] == pytest.approx(test_acc)


def test_regression_test_metrics_are_in_target_units():
    data = load_dataset("regression", n_samples=300, noise=10.0)
    assert data.y_std > 10, "make_regression targets have a large spread"
    result = Trainer(optimizer="adam", lr=1e-2, max_epochs=5, device="cpu").fit(_model(data), data)
    t = result.test
    # loss is the MSE on standardised targets; rmse is in the data's own units
    assert t["rmse"] == pytest.approx(math.sqrt(t["loss"]) * data.y_std, rel=1e-3)
    y = data.y_test.double()
    assert t["r2"] == pytest.approx(1 - t["loss"] / y.var(correction=0).item(), rel=1e-3, abs=1e-3)


def test_l2_penalty_shrinks_the_weights(moons):
    def weight_norm(l2):
        model = _model(moons, hidden=(16,))
        Trainer(optimizer="sgd", lr=0.1, batch_size=0, max_epochs=30, l2=l2, device="cpu").fit(model, _fresh(moons))
        return sum(lin.weight.norm().item() for lin in model.linears)

    assert weight_norm(0.1) < 0.8 * weight_norm(0.0)


@pytest.mark.parametrize("kind", ["clip_grad_norm", "clip_grad_value"])
def test_gradient_clipping_bounds_each_update(moons, kind):
    clip, lr = 1e-3, 1.0
    model = _model(moons, hidden=(8,))
    before = torch.cat([p.detach().clone().reshape(-1) for p in model.parameters()])
    Trainer(optimizer="sgd", lr=lr, batch_size=0, max_epochs=1, device="cpu", **{kind: clip}).fit(model, _fresh(moons))
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    step = after - before
    assert step.abs().sum() > 0
    if kind == "clip_grad_norm":
        assert step.norm().item() <= lr * clip * 1.001
    else:
        assert step.abs().max().item() <= lr * clip * 1.001
