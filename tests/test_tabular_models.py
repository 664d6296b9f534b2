"""The table tricks on the model side: numeric embeddings (against the formulas of rtdl-num-embeddings,
computed by hand), category embeddings, label smoothing (against torch's own), clamped regression outputs,
TabM (its members, their average), and that a run of each kind predicts, loads without unpickling,
exports to ONNX and refuses a crafted model.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import compose_config, refusal
from mlpkit.data.dataset import Dataset, InputLayout
from mlpkit.models.backprop import maybe_manual
from mlpkit.models.embeddings import EMBEDDINGS, PiecewiseLinear, quantile_bins, tree_bins
from mlpkit.models.mlp import MLP
from mlpkit.models.tabm import TabM
from mlpkit.tasks import TASKS
from mlpkit.training.trainer import Trainer

LAYOUT = InputLayout(numeric=3, categories=(5, 3))  # 3 numbers, 1 dense 0/1 input, 2 category codes


def _toy(task: str = "binary", n: int = 240, seed: int = 0) -> Dataset:
    """A table with the LAYOUT above, built by hand: the target depends on a number and a category."""
    g = torch.Generator().manual_seed(seed)
    numbers = torch.randn(n, 3, generator=g)
    dense = (torch.rand(n, 1, generator=g) > 0.5).float()
    codes = torch.cat([torch.randint(0, 5, (n, 1), generator=g), torch.randint(0, 3, (n, 1), generator=g)], 1)
    X = torch.cat([numbers, dense, codes.float()], 1)
    signal = numbers[:, 0] + (codes[:, 0] >= 3).float() * 1.5
    if task == "regression":
        y, classes = signal.reshape(-1, 1), []
    else:
        y, classes = (signal > 0.7).float().reshape(-1, 1), ["no", "yes"]
    a, b = int(n * 0.7), int(n * 0.85)
    return Dataset("toy", task, X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:], classes=classes, layout=LAYOUT)


# ---------------------------------------------------------------------------
# Embeddings against a hand computation of rtdl-num-embeddings' formulas


@pytest.mark.parametrize("lite", [False, True])
def test_periodic_embedding_is_plr_by_hand(lite):
    torch.manual_seed(0)
    emb = EMBEDDINGS["periodic"](3, dim=4, frequencies=5, sigma=0.5, lite=lite)
    x = torch.randn(7, 3)
    c = emb.frequencies.detach().numpy().astype(np.float64)
    assert np.all(np.abs(c) <= 3 * 0.5)  # truncated at 3 sigma
    W = emb.linear.weight.detach().numpy().astype(np.float64)
    b = emb.linear.bias.detach().numpy().astype(np.float64)
    expected = np.zeros((7, 3, 4))
    for i in range(7):
        for j in range(3):
            v = 2 * math.pi * c[j] * float(x[i, j])
            z = np.concatenate([np.cos(v), np.sin(v)])  # (2k,)
            Wj, bj = (W, b) if lite else (W[j], b[j])
            expected[i, j] = np.maximum(z @ Wj + bj, 0)
    np.testing.assert_allclose(emb(x).detach().numpy(), expected.reshape(7, 12), rtol=1e-5, atol=1e-5)


def test_quantile_bins_are_rtdl_compute_bins():
    X = np.random.default_rng(0).normal(size=(500, 2))
    X[:, 1] = np.round(X[:, 1])  # repeated values: repeated edges are dropped
    bins = quantile_bins(X, 8)
    for j in range(2):  # rtdl: torch.quantile(X, linspace(0, 1, n_bins + 1), dim=0).T, each .unique()
        ref = torch.quantile(torch.as_tensor(X[:, j]), torch.linspace(0, 1, 9, dtype=torch.float64)).unique()
        np.testing.assert_allclose(bins[j], ref.numpy())
    assert quantile_bins(np.ones((10, 1)), 4) == [[1.0, 2.0]]  # a constant column: one bin


@pytest.mark.parametrize("regression", [False, True])
def test_tree_bins_are_rtdl_compute_bins_with_tree_kwargs(regression):
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(2000, 3))
    X[:, 2] = np.round(X[:, 2] * 3)  # 7 distinct values
    y = (X[:, 0] > 0.37).astype(float) if not regression else np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    bins = tree_bins(X, y, 8, regression=regression)
    make = DecisionTreeRegressor if regression else DecisionTreeClassifier
    for j in range(3):  # rtdl: [min, max] + the split thresholds of the feature's own tree, .unique()
        tree = make(max_leaf_nodes=8, min_samples_leaf=64, min_impurity_decrease=1e-4).fit(
            X[:, j:j + 1], y if regression else y.astype(int)).tree_
        split = tree.children_left != tree.children_right
        ref = np.unique([X[:, j].min(), X[:, j].max(), *tree.threshold[split]])
        np.testing.assert_allclose(bins[j], ref)
        counts = np.histogram(X[:, j], bins=bins[j])[0]
        assert len(bins[j]) <= 9 and counts.min() >= 64  # at most 8 bins, every leaf 64 rows or more
    if not regression:  # the class boundary is an edge, and the pure sides are split no further
        assert len(bins[0]) == 3 and abs(bins[0][1] - 0.37) < 0.01
    assert tree_bins(np.ones((100, 1)), np.arange(100) % 2, 4, regression=False) == [[1.0, 2.0]]  # constant


def test_piecewise_linear_encoding_by_hand():
    bins = [[0.0, 1.0, 3.0, 4.0], [-1.0, 1.0]]  # 3 bins; 1 bin (no clipping)
    ple = PiecewiseLinear(2, dim=2, bins=bins)
    x = torch.tensor([[-0.5, -3.0], [0.5, 0.0], [2.0, 2.0], [3.5, 5.0], [9.0, 1.0]])

    def by_hand(v, edges):
        n = len(edges) - 1
        out = []
        for t in range(n):
            e = (v - edges[t]) / (edges[t + 1] - edges[t])
            if n > 1:
                e = min(e, 1.0) if t == 0 else (max(e, 0.0) if t == n - 1 else min(max(e, 0.0), 1.0))
            out.append(e)
        return out

    enc = ple.encode(x).numpy()  # (N, 2, 3): rtdl's layout, [first bins, padding 0s, last bin]
    for i in range(len(x)):
        np.testing.assert_allclose(enc[i, 0], by_hand(float(x[i, 0]), bins[0]), atol=1e-6)
        np.testing.assert_allclose(enc[i, 1], [0.0, 0.0, *by_hand(float(x[i, 1]), bins[1])], atol=1e-6)
    W, b = ple.linear.weight.detach(), ple.linear.bias.detach()
    expected = torch.relu(torch.einsum("bnf,nfd->bnd", torch.as_tensor(enc), W) + b).flatten(1)
    torch.testing.assert_close(ple(x), expected)


def test_the_encoder_embeds_numbers_passes_dense_inputs_and_embeds_category_codes():
    torch.manual_seed(0)
    model = MLP(6, [8], 1, embedding="periodic", embedding_params={"dim": 4, "frequencies": 2},
                layout=LAYOUT.to_json(), category_dim=3, seed=0)
    enc = model.encoder
    x = _toy().X_train[:5]
    out = enc(x)
    assert out.shape == (5, 3 * 4 + 1 + 2 * 3) == (5, enc.out_dim)
    torch.testing.assert_close(out[:, :12], enc.numbers(x[:, :3]))
    torch.testing.assert_close(out[:, 12], x[:, 3])
    torch.testing.assert_close(out[:, 13:16], enc.categories[0].weight[x[:, 4].long()])
    torch.testing.assert_close(out[:, 16:], enc.categories[1].weight[x[:, 5].long()])


def test_a_plain_mlp_stays_plain_and_an_encoded_one_uses_autograd():
    plain = MLP(6, [8], 1, seed=3)
    again = MLP(6, [8], 1, embedding="none", layout=None, clamp=None, seed=3)
    assert plain.encoder is None and not plain.autograd_only
    for (k1, v1), (k2, v2) in zip(plain.state_dict().items(), again.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert maybe_manual(plain, "binary") is not None
    for kwargs in ({"embedding": "periodic"}, {"layout": LAYOUT.to_json()}):
        model = MLP(6, [8], 1, seed=3, **kwargs)
        assert maybe_manual(model, "binary") is None
    tabm = TabM(6, [8], 1, "binary", k=2, seed=0)
    assert maybe_manual(tabm, "binary") is None


@pytest.mark.parametrize("embedding", sorted(EMBEDDINGS))
def test_every_embedding_trains_with_category_codes(embedding):
    data = _toy()
    bins = quantile_bins(data.X_train[:, :3].numpy(), 8) if embedding == "piecewise_linear" else None
    model = MLP(6, [32], 1, embedding=embedding, layout=LAYOUT.to_json(), bins=bins, seed=0)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    result = Trainer(max_epochs=40, lr=1e-2, batch_size=32, seed=0).fit(model, data)
    assert result.extra["backprop"] == "autograd"
    assert all(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))  # all of it learns
    assert result.test["accuracy"] >= 0.8


# ---------------------------------------------------------------------------
# Label smoothing against torch


def test_label_smoothing_is_torchs():
    torch.manual_seed(0)
    z, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    for e in (0.0, 0.1, 0.3):
        torch.testing.assert_close(TASKS["multiclass"].loss(None, e)(z, y), F.cross_entropy(z, y, label_smoothing=e))
        w = torch.tensor([0.5, 1.0, 2.0, 1.5])
        torch.testing.assert_close(TASKS["multiclass"].loss(w, e)(z, y),
                                   F.cross_entropy(z, y, weight=w, label_smoothing=e))
    # binary: BCE on y (1 - e) + e / 2 is cross-entropy over the logits [0, z] with torch's label smoothing
    zb, yb = torch.randn(16, 1), torch.randint(0, 2, (16, 1)).float()
    two = torch.cat([torch.zeros_like(zb), zb], 1)
    for e in (0.0, 0.1, 0.3):
        torch.testing.assert_close(TASKS["binary"].loss(None, e)(zb, yb),
                                   F.cross_entropy(two, yb[:, 0].long(), label_smoothing=e))
    w = torch.tensor([0.7, 1.3])  # class weights: each row's smoothed loss weighted by its own class's weight
    target = yb * 0.8 + 0.1
    terms = -(target * F.logsigmoid(zb) + (1 - target) * F.logsigmoid(-zb))
    torch.testing.assert_close(TASKS["binary"].loss(w, 0.2)(zb, yb), (w[yb.long()] * terms).sum() / w[yb.long()].sum())


def test_label_smoothing_trains_by_autograd_and_is_refused_for_regression(tmp_path):
    result = Trainer(max_epochs=2, label_smoothing=0.1).fit(MLP(6, [8], 1, seed=0), _toy())
    assert result.extra["backprop"] == "autograd"  # the chain rule's output gradient is the plain loss's
    assert "label_smoothing" in refusal(["data=diabetes", "regularization.label_smoothing=0.1"])
    assert "label_smoothing" in refusal(["data=digits", "regularization.label_smoothing=1.0"])
    assert refusal(["data=digits", "regularization.label_smoothing=0.1"]) == ""
    assert "clamp_output" in refusal(["data=iris", "model.clamp_output=true"])
    # from the preset (data=csv's recipe) they apply where the task takes them
    for task in ("regression", "binary"):
        table = _table(tmp_path / f"{task}.csv", task=task)
        assert refusal(["data=csv", f"data.path={table}", "data.target=y", f"data.task={task}"]) == ""


# ---------------------------------------------------------------------------
# TabM


def test_tabm_members_differ_after_training_and_eval_is_the_mean_probability():
    data = _toy()
    model = TabM(6, [16, 16], 1, "binary", k=4, embedding="periodic", layout=LAYOUT.to_json(), seed=0)
    first = model.net[0]
    assert set(first.r.detach().unique().tolist()) <= {-1.0, 1.0} and torch.equal(first.s, torch.ones_like(first.s))
    assert torch.equal(model.net[2].r, torch.ones_like(model.net[2].r))  # only the first adapter is random
    Trainer(max_epochs=5, lr=1e-2, batch_size=32).fit(model, data)
    model.eval()
    with torch.no_grad():
        members = model.members(data.X_test)  # (N, k, 1)
        assert members.shape == (len(data.X_test), 4, 1)
        assert members.std(1).mean() > 1e-3  # the members differ
        p = torch.sigmoid(members.double()).mean(1)  # the mean probability, by hand
        torch.testing.assert_close(torch.sigmoid(model(data.X_test).double()), p, rtol=1e-5, atol=1e-6)
    multi = TabM(4, [8], 3, "multiclass", k=3, seed=0).eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        p = torch.softmax(multi.members(x).double(), -1).mean(1)
        torch.testing.assert_close(torch.softmax(multi(x).double(), -1), p, rtol=1e-5, atol=1e-6)
        reg = TabM(4, [8], 1, "regression", k=3, seed=0).eval()
        torch.testing.assert_close(reg(x), reg.members(x).mean(1))


def test_tabm_trains_on_the_mean_of_its_members_losses():
    data = _toy()
    model = TabM(6, [8], 1, "binary", k=3, seed=0).train()
    trainer = Trainer(max_epochs=1)
    from mlpkit.training.trainer import GradientDescent

    rule = GradientDescent()
    rule.loss_fn = TASKS["binary"].loss()
    out = model(data.X_train)
    loss, kept = rule.batch_loss(TASKS["binary"], out, data.y_train)
    by_member = [F.binary_cross_entropy_with_logits(out[:, i], data.y_train) for i in range(3)]
    torch.testing.assert_close(loss, torch.stack(by_member).mean())
    assert kept.shape == (len(data.X_train), 1) and trainer.max_epochs == 1


# ---------------------------------------------------------------------------
# Runs of each kind, end to end (in process), through predict.py and load_run


def _table(path: Path, n: int = 240, task: str = "binary") -> Path:
    """x1 uniform in [0, 1], x2 normal, c a category of six values; y from x1 (and c)."""
    rng = np.random.default_rng(0)
    x1, x2, c = rng.uniform(0, 1, n), rng.normal(size=n), rng.choice(list("abcdef"), n)
    y = x1 + 0.1 * x2 if task == "regression" else np.where(x1 + 0.3 * x2 + 0.3 * (c < "c") > 0.5, "yes", "no")
    lines = ["x1,x2,c,y", *(f"{a:.6f},{b:.6f},{k},{v if isinstance(v, str) else f'{v:.6f}'}"
                            for a, b, k, v in zip(x1, x2, c, y))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(args, run_dir: Path) -> Path:
    from mlpkit.app.cli import checked_job_config, train_from_config

    cfg = checked_job_config(compose_config(args), list(args))
    run_dir.mkdir(parents=True)
    train_from_config(cfg, run_dir)
    return run_dir


KINDS = {
    "periodic": ["embedding=periodic", "embedding.dim=4", "embedding.frequencies=4"],
    "piecewise_linear": ["embedding=piecewise_linear", "embedding.bins=6", "embedding.dim=4"],
    "piecewise_linear_tree": ["embedding=piecewise_linear", "embedding.bins=6", "embedding.binning=tree",
                              "embedding.dim=4"],
    "tabm": ["model=tabm", "model.k=3", "model.hidden=[16,16]"],
    "tabm_ple": ["model=tabm", "model.k=2", "model.hidden=[8]", "embedding=piecewise_linear", "embedding.bins=4"],
    "recipe": [],  # data=csv's own: recipe=tabular
    "categories": ["data.onehot_max=2", "model.category_dim=3"],  # c: one code input, embedded
    "refit": ["trainer.refit=true"],  # the kept model is checkpoints/refit.pt
    "refit_models": ["trainer.refit=true", "trainer.refit_models=2"],  # refit.pt: a seed ensemble of two
}


@pytest.fixture(scope="module")
def kind_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    table = _table(root / "t.csv")
    small = ["data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=3", "trainer.progress=false",
             "model.hidden=[16]"]
    one = ["trainer.refit_models=1"]  # each kind's own model, inspected below (recipe: data=csv's ensemble of 2)
    return table, {kind: _train([*small, *args, *([] if kind in ("recipe", "refit_models") else one)], root / kind)
                   for kind, args in KINDS.items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_run_of_each_kind_predicts_loads_and_exports(kind, kind_runs, cli, tmp_path):
    import pandas as pd

    import mlpkit

    table, runs = kind_runs
    run_dir = runs[kind]
    proc = cli(run_dir, table, "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    run = mlpkit.load_run(run_dir)
    if kind == "categories":  # the category is one code input, last in the row, embedded
        assert run.model.encoder is not None and len(run.model.encoder.categories) == 1
    got = pd.read_csv(tmp_path / "p.csv")
    X = torch.from_numpy(run.preprocessing.transform(pd.read_csv(table)))
    with torch.no_grad():
        out = run.model(X)
        if kind.startswith("tabm"):  # predict returns the members' mean probability
            p = torch.sigmoid(run.model.members(X).double()).mean(1)[:, 0].numpy()
            np.testing.assert_allclose(got["proba_yes"], p, rtol=1e-4, atol=1e-5)
        if kind == "refit_models":  # ...and so does a seed ensemble, of two models that differ
            a, b = (torch.sigmoid(m(X).double())[:, 0] for m in run.model.nets)
            assert not torch.allclose(a, b)
            np.testing.assert_allclose(got["proba_yes"], ((a + b) / 2).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["proba_yes"], torch.sigmoid(out.double())[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert cli(run_dir, "--export", tmp_path / "m.onnx").returncode == 0
    onnx_out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"inputs": X.numpy()})[0]
    np.testing.assert_allclose(onnx_out, out.numpy(), rtol=1e-4, atol=1e-5)


CRAFTED = {  # kind -> (field, bad value)
    "piecewise_linear": [("bins", [[0.0, 0.0]]), ("bins", "many"), ("embedding", "fourier"),
                         ("embedding_params", {"dim": 10 ** 6})],
    "piecewise_linear_tree": [("embedding_params", {"binning": "forest"})],
    "periodic": [("layout", {"numeric": 1, "categories": [True]}), ("category_dim", -2)],
    "tabm": [("k", 0), ("task", "regression"), ("k", 10 ** 6)],
    "categories": [("layout", {"numeric": 2, "categories": [6, 6, 6]}), ("layout", "wide")],
}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_crafted_model_json_of_each_kind_is_refused_in_one_line(kind, kind_runs, cli, tmp_path):
    import shutil

    table, runs = kind_runs
    for i, (field, value) in enumerate(CRAFTED[kind]):
        run_dir = tmp_path / f"{kind}_{i}"
        shutil.copytree(runs[kind], run_dir)
        spec = json.loads((run_dir / "model.json").read_text())
        spec["kwargs"][field] = value
        (run_dir / "model.json").write_text(json.dumps(spec))
        proc = cli(run_dir, table, "-o", tmp_path / "p.csv")
        assert proc.returncode == 2, (field, value, proc.stderr)
        line = proc.stderr.strip()
        assert "\n" not in line and "model.json" in line and f"kwargs" in line, line
        assert "Traceback" not in proc.stderr


def test_clamp_output_clips_predict_py_to_the_train_range(tmp_path, cli):
    import pandas as pd

    table = _table(tmp_path / "r.csv", task="regression")
    base = ["data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=30", "trainer.progress=false",
            "recipe=none", "model.hidden=[16]", "optimizer.lr=0.01"]
    free = _train([*base, "model.clamp_output=false"], tmp_path / "free")
    clamped = _train([*base, "model.clamp_output=true"], tmp_path / "clamped")
    y = pd.read_csv(table)["y"]
    far = tmp_path / "far.csv"
    far.write_text("x1,x2,c\n50,0,a\n-50,0,b\n0.5,0,c\n")  # far outside the train rows: a linear trend leaves the range
    outs = {}
    for name, run_dir in (("free", free), ("clamped", clamped)):
        assert cli(run_dir, far, "-o", tmp_path / f"{name}.csv").returncode == 0
        outs[name] = pd.read_csv(tmp_path / f"{name}.csv")["prediction"].to_numpy()
    train_rows = np.load(clamped / "splits.npz")["train"]
    low, high = y.iloc[train_rows].min(), y.iloc[train_rows].max()
    assert outs["free"][0] > high or outs["free"][1] < low  # the raw prediction leaves the range...
    assert np.all(outs["clamped"] >= low - 1e-4) and np.all(outs["clamped"] <= high + 1e-4)  # ...clipped
    assert outs["clamped"].max() == pytest.approx(high, rel=1e-4) or outs["clamped"].min() == pytest.approx(low, rel=1e-4)


# ---------------------------------------------------------------------------
# The recipe: data=csv picks it, the command line and experiments win over it, built-in sets keep theirs


def test_data_csv_uses_the_tabular_recipe_and_every_override_wins():
    csv = ["data=csv", "data.path=t.csv"]
    cfg = compose_config(csv)
    assert cfg.embedding.name == "piecewise_linear" and cfg.optimizer.name == "adamw" and cfg.model.clamp_output
    assert cfg.early_stopping.patience == cfg.trainer.max_epochs == 100  # the schedule runs to its end
    assert cfg.trainer.max_steps == 3000  # larger tables: fewer epochs
    assert cfg.regularization.label_smoothing == 0.1 and cfg.scheduler.name == "cosine_warmup"
    plain = compose_config(["data=digits"])
    none = compose_config([*csv, "recipe=none"])
    for key in ("model", "embedding", "optimizer", "scheduler", "regularization", "trainer", "early_stopping"):
        assert none[key] == plain[key], key  # recipe=none: a table gets today's defaults
    mine = compose_config([*csv, "embedding=none", "optimizer.weight_decay=0.1", "trainer.max_epochs=7",
                           "activation=tanh", "arch=hidden_2"])
    assert (mine.embedding.name, mine.optimizer.weight_decay, mine.trainer.max_epochs) == ("none", 0.1, 7)
    assert mine.early_stopping.patience == 7  # follows max_epochs
    assert mine.activation.name == "tanh" and list(mine.model.hidden) == [2]  # an arch preset wins too
    assert compose_config(["data=iris"]).embedding.name == "none"  # a built-in set keeps today's defaults
    ablated = compose_config([*csv, "experiment=tabular_tricks", "ablation=no_recipe"])
    for key in ("model", "embedding", "optimizer", "scheduler", "regularization", "early_stopping"):
        assert ablated[key] == plain[key], key  # the ablation's baseline is today's defaults
    assert compose_config([*csv, "ablation=no_embedding"]).embedding.name == "none"


@pytest.mark.parametrize("kind", ["tabm", "piecewise_linear"])
def test_a_resumed_run_of_each_kind_continues_as_if_never_stopped(kind, tmp_path):
    def make():
        if kind == "tabm":
            return TabM(6, [8], 1, "binary", k=3, embedding="periodic", layout=LAYOUT.to_json(), seed=0)
        bins = quantile_bins(_toy().X_train[:, :3].numpy(), 4)
        return MLP(6, [8], 1, embedding="piecewise_linear", bins=bins, layout=LAYOUT.to_json(), seed=0)

    settings = dict(scheduler="cosine_warmup", label_smoothing=0.1, seed=0)
    whole = Trainer(max_epochs=4, scheduler_params={"warmup_epochs": 1}, run_dir=tmp_path / "whole",
                    **settings).fit(make(), _toy())
    Trainer(max_epochs=2, scheduler_params={"warmup_epochs": 1, "t_max": 4}, run_dir=tmp_path / "cut",
            **settings).fit(make(), _toy())
    resumed = Trainer(max_epochs=4, scheduler_params={"warmup_epochs": 1}, run_dir=tmp_path / "cut",
                      **settings).fit(make(), _toy(), resume_from=tmp_path / "cut" / "checkpoints" / "last.pt")
    assert resumed.history["val_loss"] == whole.history["val_loss"] and resumed.history["lr"] == whole.history["lr"]


def test_binning_is_a_setting_of_piecewise_linear_alone_with_a_known_value():
    assert refusal(["embedding=piecewise_linear", "embedding.binning=trees"]) == (
        "embedding.binning='trees' is not known; choose one of: quantile, tree (did you mean tree?)")
    assert "embedding.binning is not a setting of embedding=periodic" in refusal(
        ["embedding=periodic", "embedding.binning=tree"])
    assert refusal(["embedding=piecewise_linear", "embedding.binning=tree"]) == ""


def test_the_tabular_recipe_on_a_built_in_data_set_is_refused_naming_the_recipe():
    message = refusal(["recipe=tabular"])
    assert "recipe=tabular" in message and "recipe=none" in message and "\n" not in message


@pytest.mark.parametrize("args, said", [
    (["model=tabm", "norm=batch"], "norm=batch does not apply to model=tabm"),
    (["data=and", "model=perceptron", "optimizer=sgd"], "optimizer=sgd does not apply to model=perceptron"),
])
def test_a_group_choice_the_model_family_ignores_is_refused(args, said):
    message = refusal(args)
    assert said in message and "\n" not in message
    assert refusal(["model=tabm", "norm=none"]) == ""
