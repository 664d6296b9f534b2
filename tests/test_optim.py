"""Every registered optimiser takes a useful step; every scheduler changes the lr as its name says."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from mlpkit import ConfigError, make_optimizer, make_scheduler
from mlpkit.training.optim import OPTIMIZERS, SCHEDULERS

from conftest import CONFIGS, compose_config

OPT_NAMES = sorted(OPTIMIZERS)
SCHED_NAMES = sorted(SCHEDULERS)


def _config_settings(group: str, name: str) -> dict:
    """The non-null settings `python train.py <group>=<name>` composes for the group (less `name`)."""
    if not (CONFIGS / group / f"{name}.yaml").is_file():
        return {}
    node = OmegaConf.to_container(compose_config([f"{group}={name}"])[group])
    return {k: v for k, v in node.items() if k != "name" and v is not None}


def _problem():
    """A small least-squares problem in float64: loss(w) = mean((X w - y)^2)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64) + 0.1
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    return X, y, [w, b]


def _loss(X, y, params):
    w, b = params
    return (X @ w + b - y).pow(2).mean()


def _losses(name: str, steps: int):
    """The loss before each of `steps` steps of optimizer `name` (its config settings), and after the last."""
    settings = _config_settings("optimizer", name)
    lr = settings.pop("lr", 0.01)
    X, y, params = _problem()
    opt = make_optimizer(params, name, lr, **settings)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(X, y, params)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(_loss(X, y, params).item())
    return losses


@pytest.mark.parametrize("name", OPT_NAMES)
def test_one_step_reduces_the_loss(name):
    before, after = _losses(name, 1)
    assert after < before, f"{name}: one step went from {before} to {after}"


@pytest.mark.parametrize("name", OPT_NAMES)
def test_a_few_steps_keep_reducing_the_loss(name):
    losses = _losses(name, 20)[:-1]  # the losses the 20 steps were taken on, as before
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_fixed_settings_of_the_sgd_family():
    p = [torch.zeros(2, requires_grad=True)]
    sgd = make_optimizer(p, "sgd", 0.1).param_groups[0]
    assert isinstance(make_optimizer(p, "sgd", 0.1), torch.optim.SGD)
    assert sgd["momentum"] == 0 and sgd["nesterov"] is False
    mom = make_optimizer(p, "momentum", 0.1).param_groups[0]
    assert mom["momentum"] == 0.9 and mom["nesterov"] is False
    nes = make_optimizer(p, "nesterov", 0.1).param_groups[0]
    assert nes["momentum"] == 0.9 and nes["nesterov"] is True
    # a user may change the momentum coefficient, not the name-given nesterov flag
    assert make_optimizer(p, "momentum", 0.1, momentum=0.5).param_groups[0]["momentum"] == 0.5
    with pytest.raises(ConfigError, match="nesterov"):
        make_optimizer(p, "sgd", 0.1, nesterov=True)


@pytest.mark.parametrize("name, cls", [("adagrad", torch.optim.Adagrad), ("rmsprop", torch.optim.RMSprop),
                                       ("adadelta", torch.optim.Adadelta), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_named_optimizer_is_the_torch_class(name, cls):
    opt = make_optimizer([torch.zeros(2, requires_grad=True)], name, 0.01)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01


def test_optimizer_settings_are_passed_and_checked():
    p = [torch.zeros(2, requires_grad=True)]
    adam = make_optimizer(p, "adam", 0.01, betas=[0.8, 0.9], weight_decay=0.1).param_groups[0]
    assert tuple(adam["betas"]) == (0.8, 0.9) and adam["weight_decay"] == 0.1
    with pytest.raises(ConfigError, match="momentum"):
        make_optimizer(p, "adam", 0.01, momentum=0.9)
    with pytest.raises(ConfigError, match="adamx"):
        make_optimizer(p, "adamx", 0.01)


# ---------------------------------------------------------------------------
# Schedulers


def _lrs(name: str, epochs: int, val_losses=None, **settings) -> list:
    opt = make_optimizer([torch.zeros(2, requires_grad=True)], "sgd", 1.0)
    sched = make_scheduler(opt, name, max_epochs=epochs, **settings)
    lrs = []
    for epoch in range(epochs):
        opt.step()
        if sched is not None:
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(1.0 if val_losses is None else val_losses[epoch])
            else:
                sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _check_none(lrs):
    assert lrs == [1.0] * len(lrs)


def _check_step(lrs):  # configs/scheduler/step.yaml: step_size 10, gamma 0.5
    assert lrs[8] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.5) and lrs[19] == pytest.approx(0.25)


def _check_cosine(lrs):  # t_max = max_epochs: from 1 down to eta_min 0 at the last epoch
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)
    assert lrs[len(lrs) // 2 - 1] == pytest.approx(0.5, abs=1e-9)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def _check_plateau(lrs):  # a flat val loss: halved after `patience` (5) epochs without improvement
    assert lrs[:6] == [1.0] * 6
    assert lrs[6] == pytest.approx(0.5)
    assert lrs[-1] < 0.5


def _check_cosine_warmup(lrs):
    # 20 epochs, warmup_epochs=5: lr (e+1)/6 for the first five epochs, then half a cosine from 1 to 0 over 15
    expected = [(e + 1) / 6 if e < 5 else 0.5 * (1 + math.cos(math.pi * (e - 5) / 15)) for e in range(1, 21)]
    assert lrs == pytest.approx(expected)


SCHED_EXPECTED = {"none": _check_none, "step": _check_step, "cosine": _check_cosine, "plateau": _check_plateau,
                  "cosine_warmup": _check_cosine_warmup}


@pytest.mark.parametrize("name", SCHED_NAMES)
def test_every_scheduler_with_its_config_defaults(name):
    if name not in SCHED_EXPECTED:
        pytest.fail(f"new scheduler {name!r}: add its expected lr curve to SCHED_EXPECTED")
    settings = _config_settings("scheduler", name)
    lrs = _lrs(name, 20, **settings)
    assert all(math.isfinite(v) and 0 <= v <= 1.0 for v in lrs)
    SCHED_EXPECTED[name](lrs)


def test_scheduler_settings_are_honoured():
    lrs = _lrs("step", 6, step_size=2, gamma=0.1)
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.001])
    lrs = _lrs("cosine", 10, t_max=4, eta_min=0.2)
    assert lrs[3] == pytest.approx(0.2)
    lrs = _lrs("cosine_warmup", 10, t_max=6, eta_min=0.2, warmup_epochs=2)
    assert lrs[:2] == pytest.approx([2 / 3, 1.0]) and lrs[5:] == pytest.approx([0.2] * 5)
    assert make_scheduler(make_optimizer([torch.zeros(1, requires_grad=True)], "sgd", 1.0), "none") is None
    with pytest.raises(ConfigError, match="gamma"):
        make_scheduler(make_optimizer([torch.zeros(1, requires_grad=True)], "sgd", 1.0), "cosine", gamma=0.5)
