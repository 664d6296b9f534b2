"""data.numeric and data.onehot_max on a user's table: each scaling trains and predicts end to end,
robust's inputs against a hand computation (median, IQR, smooth clip), quantile's against scikit-learn's
QuantileTransformer fitted directly, category codes and the input layout against the file's own values,
and crafted preprocessing.json fields refused with one line naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlpkit import ConfigError, load_dataset
from mlpkit.data.dataset import InputLayout
from mlpkit.data.preprocess import MIN_FREQUENCY, MISSING, NUMERIC, TRUSTED_TYPES, Preprocessing

from support import finished_run, refusal

CITIES = [f"c{i:02d}" for i in range(12)]  # c00 most common ... c11 seen about once


def city_table(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Numbers with missing cells, a column that is mostly 0 (an IQR of 0), a category of 12 values of
    falling frequency (the last ones rare) with missing cells, one of 3 values, and a binary target."""
    rng = np.random.default_rng(seed)
    weights = np.array([2.0 ** -(i / 2) for i in range(len(CITIES))])
    lines = ["num,spiky,city,color,y"]
    for i in range(n):
        x = rng.normal(10, 3) * (20 if i % 37 == 0 else 1)  # a few outliers
        num = "" if rng.random() < 0.1 else f"{x:.4f}"
        spiky = f"{rng.normal(5, 2):.3f}" if rng.random() < 0.15 else "0"
        city = "" if rng.random() < 0.05 else CITIES[rng.choice(len(CITIES), p=weights / weights.sum())]
        color = ["red", "green", "blue"][i % 3]
        y = "yes" if (x > 10) ^ (rng.random() < 0.1) else "no"
        lines.append(f"{num},{spiky},{city},{color},{y}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_frame(path: Path, data, split: str = "train"):
    import pandas as pd

    return pd.read_csv(path).iloc[data.rows[split]]


def _column(data, name: str) -> np.ndarray:
    return data.X_train.numpy()[:, data.preprocessing.inputs.index(name)]


def _hand_robust(v: np.ndarray) -> np.ndarray:
    """RealMLP-TD's robust scaling and smooth clip of one column's train values; missing -> 0."""
    seen = v[~np.isnan(v)]
    median = np.median(seen)
    q1, q3 = np.percentile(seen, [25, 75])
    scale = q3 - q1 if q3 > q1 else 0.5 * (seen.max() - seen.min())
    z = (v - median) / scale
    z = z / np.sqrt(1 + (z / 3) ** 2)
    return np.where(np.isnan(v), 0.0, z)


def test_robust_is_median_iqr_and_the_smooth_clip(tmp_path):
    path = city_table(tmp_path / "t.csv")
    data = load_dataset("csv", path=str(path), target="y", numeric="robust")
    train = _train_frame(path, data)
    assert (train["spiky"].quantile(0.75) - train["spiky"].quantile(0.25)) == 0  # the half-range fallback
    for name in ("num", "spiky"):
        expected = _hand_robust(train[name].to_numpy(np.float64))
        np.testing.assert_allclose(_column(data, name), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(data.X_train.numpy()[:, :2]).max() < 3  # the outliers are clipped smoothly
    assert set(np.unique(_column(data, "missingindicator_num"))) == {0.0, 1.0}  # indicators stay 0/1


def test_quantile_is_scikit_learns_quantile_transformer(tmp_path):
    from sklearn.preprocessing import QuantileTransformer

    path = city_table(tmp_path / "t.csv")
    data = load_dataset("csv", path=str(path), target="y", numeric="quantile", seed=3)
    train, test = _train_frame(path, data), _train_frame(path, data, "test")
    qt = QuantileTransformer(n_quantiles=min(1000, len(train)), output_distribution="normal", subsample=100_000,
                             random_state=3).fit(train[["num", "spiky"]].to_numpy(np.float64))
    fill = np.nanmedian(qt.transform(train[["num", "spiky"]].to_numpy(np.float64)), axis=0)
    for frame, X in ((train, data.X_train), (test, data.X_test)):
        expected = qt.transform(frame[["num", "spiky"]].to_numpy(np.float64))
        expected = np.where(np.isnan(expected), fill, expected)
        np.testing.assert_allclose(X.numpy()[:, :2], expected, rtol=1e-5, atol=1e-6)


def test_onehot_max_makes_a_wide_category_one_code_input(tmp_path):
    import pandas as pd

    path = city_table(tmp_path / "t.csv")
    data = load_dataset("csv", path=str(path), target="y", onehot_max=4)
    pre = data.preprocessing
    train = _train_frame(path, data)
    values = train["city"].fillna(MISSING).astype(str)
    counts = values.value_counts()
    vocabulary = sorted(counts.index)
    frequent = [v for v in vocabulary if counts[v] >= MIN_FREQUENCY]
    assert len(frequent) + 1 > 4 and len(frequent) < len(vocabulary)  # wide, with rare values
    shared = len(frequent)
    # the code input is the last; color (3 values) stays one-hot
    assert pre.inputs[-1] == "city" and [c for c in pre.inputs if c.startswith("color_")] == \
        ["color_blue", "color_green", "color_red"]
    assert data.layout == InputLayout(numeric=2, categories=(shared + 1,))
    assert {c.name: c.inputs for c in pre.columns} == {"num": 2, "spiky": 1, "city": 1, "color": 3}
    codes = [frequent.index(v) if v in frequent else shared for v in values]
    np.testing.assert_array_equal(data.X_train.numpy()[:, -1], np.array(codes, np.float32))
    # new rows: a value never seen, a rare one and a missing one; applied by the saved preprocessing
    run = tmp_path / "run"
    run.mkdir()
    pre.save(run)
    loaded = Preprocessing.load(run)
    rare = next(v for v in vocabulary if v not in frequent)
    new = pd.DataFrame({"num": [1.0, 2.0, np.nan, 4.0], "spiky": [0.0] * 4,
                        "city": ["Atlantis", rare, np.nan, frequent[1]], "color": ["red"] * 4})
    got = loaded.transform(new)[:, -1]
    missing_code = frequent.index(MISSING) if MISSING in frequent else shared
    np.testing.assert_array_equal(got, [shared, shared, missing_code, 1])
    assert loaded.unseen(new) == {"city": 1} and loaded.layout == data.layout


def test_layouts_without_codes(tmp_path):
    path = city_table(tmp_path / "t.csv")
    assert load_dataset("csv", path=str(path), target="y").layout == InputLayout(numeric=2, categories=())
    assert load_dataset("csv", path=str(path), target="y", onehot_max=0).layout.categories[1] == 4  # color
    assert load_dataset("iris").layout == InputLayout()


@pytest.mark.parametrize("numeric, onehot_max", [(n, None) for n in NUMERIC] + [("robust", 2)])
def test_each_choice_trains_and_predict_reproduces_its_test_metrics(tmp_path, cli, numeric, onehot_max):
    import mlpkit

    path = city_table(tmp_path / "t.csv", n=160)
    run_dir = finished_run(tmp_path / "run", [
        "data=csv", f"data.path={path}", "data.target=y", f"data.numeric={numeric}",
        f"data.onehot_max={'null' if onehot_max is None else onehot_max}", "model.hidden=[8]",
        "trainer.max_epochs=2", "trainer.progress=false"])
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    proc = cli(run_dir, path, "--split", "test", "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    run = mlpkit.load_run(run_dir)
    stats = run.predict_file(str(path), str(tmp_path / "q.csv"), split="test", report=lambda m: None)
    for key, value in stats["metrics"].items():
        if isinstance(value, float):
            assert value == pytest.approx(saved[key], rel=1e-6, abs=1e-6), key
    assert stats["metrics"]["confusion_matrix"] == saved["confusion_matrix"]
    # new rows with an unseen category are predicted, and counted
    import pandas as pd

    new = pd.read_csv(path).head(5).assign(city="Atlantis")
    assert len(run.predict(new)) == 5
    new.to_csv(tmp_path / "new.csv", index=False)
    proc = cli(run_dir, tmp_path / "new.csv", "-o", tmp_path / "new.out.csv")
    assert proc.returncode == 0 and "city: 5" in proc.stderr, proc.stderr
    untrusted = __import__("skops.io", fromlist=["io"]).get_untrusted_types(file=run_dir / "preprocessing.skops")
    assert set(untrusted) <= set(TRUSTED_TYPES)


@pytest.fixture(scope="module")
def code_run(tmp_path_factory):
    """A finished robust run whose city column is one code input."""
    root = tmp_path_factory.mktemp("codes")
    path = city_table(root / "t.csv", n=160)
    run_dir = finished_run(root / "run", ["data=csv", f"data.path={path}", "data.target=y", "data.numeric=robust",
                                          "data.onehot_max=3", "model.hidden=[4]", "trainer.max_epochs=1",
                                          "trainer.progress=false"])
    return path, run_dir


def _column_edit(name: str, key: str, value):
    def apply(spec):
        col = next(c for c in spec["columns"] if c["name"] == name)
        col[key] = value
    return apply


CRAFTED = {  # damage of preprocessing.json -> the field the message names
    "encoding_unknown": (_column_edit("city", "encoding", "fancy"), "'columns[2].encoding'"),
    "encoding_code_on_a_number": (_column_edit("num", "encoding", "code"), "'columns[0].encoding'"),
    "rare_out_of_range": (_column_edit("city", "rare", [10_000]), "'columns[2].rare'"),
    "rare_text": (_column_edit("city", "rare", ["c11"]), "'columns[2].rare'"),
    "rare_unsorted": (_column_edit("city", "rare", [9, 3]), "'columns[2].rare'"),
    "rare_on_a_onehot_column": (_column_edit("color", "rare", [0]), "'columns[3].rare'"),
    "code_made_onehot": (lambda spec: [_column_edit("city", k, v)(spec) for k, v in (("encoding", "onehot"),
                                                                                      ("rare", []))],
                         "does not match"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_code_fields_are_refused_naming_the_field(code_run, tmp_path, cli, case):
    path, run_dir = code_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    spec = json.loads((copy / "preprocessing.json").read_text())
    damage, field = CRAFTED[case]
    damage(spec)
    (copy / "preprocessing.json").write_text(json.dumps(spec))
    proc = cli(copy, path, "-o", tmp_path / "p.csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "preprocessing" in lines[0] and field in lines[0], lines
    assert not (tmp_path / "p.csv").exists()


def test_a_crafted_skops_file_of_a_robust_run_runs_no_code(code_run, tmp_path, cli):
    import os

    import skops.io as sio

    path, run_dir = code_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "preprocessing.skops").write_bytes(sio.dumps({"f": os.system}))
    proc = cli(copy, path, "-o", tmp_path / "p.csv")
    assert proc.returncode == 2 and "holds types mlpkit does not load" in proc.stderr


@pytest.mark.parametrize("args, words", [
    (["data=digits", "data.numeric=robust"], "data.numeric is not a setting of data=digits"),
    (["data=moons", "data.onehot_max=3"], "data.onehot_max is not a setting of data=moons"),
    (["data=csv", "data.path={csv}", "data.numeric=minmax"], "data.numeric='minmax' is not known"),
    (["data=csv", "data.path={csv}", "data.onehot_max=-1"], "data.onehot_max=-1 is out of range"),
    (["data=csv", "data.path={csv}", "data.numeric=quantile", "data.standardize=false"],
     "data.numeric=quantile scales the numeric columns, but data.standardize=false"),
])
def test_bad_settings_are_one_line(tmp_path, args, words):
    csv = city_table(tmp_path / "t.csv", n=40)
    msg = refusal([a.format(csv=csv) for a in args])
    assert words in msg and "\n" not in msg


def test_the_python_api_refuses_what_a_built_in_set_cannot_do():
    with pytest.raises(ConfigError, match="data.numeric=robust applies to your own table"):
        load_dataset("moons", numeric="robust")
    with pytest.raises(ConfigError, match="data.onehot_max=2 applies to your own table"):
        load_dataset("moons", onehot_max=2)
    with pytest.raises(ConfigError, match="data.numeric='rank' is not known"):
        load_dataset("moons", numeric="rank")


@pytest.mark.parametrize("numeric", NUMERIC)
@pytest.mark.parametrize("drop", [[], ["city"]], ids=["rare-categories", "none-rare"])
def test_inputs_equal_the_column_transformers_own(tmp_path, numeric, drop):
    """Preprocessing.transform writes the inputs itself (a block at a time, one-hot by index); they equal
    the fitted ColumnTransformer's own transform, missing and never-seen values included (to the
    `infrequent` input, or to none when no category was rare); a ColumnTransformer fitted whole, as
    older runs saved it, gives the same inputs; the imputer's median is strategy="median"'s."""
    import pandas as pd
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer

    path = city_table(tmp_path / "t.csv", n=400)
    data = load_dataset("csv", path=str(path), target="y", numeric=numeric, drop=drop, seed=2)
    pre = data.preprocessing
    new = pd.read_csv(path).iloc[data.rows["test"]].reset_index(drop=True)
    new.loc[0, "color"], new.loc[1, "num"], new.loc[2, "color"] = "purple", np.nan, np.nan  # unseen, missing
    if not drop:
        new.loc[3, "city"] = "nowhere"
        assert pre.encoder.infrequent_categories_[0] is not None  # the rare cities share an input
    dense = len(pre.inputs)
    for frame in (new, _train_frame(path, data)):
        expected = pre.transformer.transform(pre.frame(frame))
        expected = expected.toarray() if hasattr(expected, "toarray") else expected
        np.testing.assert_array_equal(pre.transform(frame), expected.astype(np.float32))
    np.testing.assert_array_equal(pre.transform(_train_frame(path, data)), data.X_train.numpy())
    # into a caller's array: one holding other numbers (cleared first), and one that is not one block of
    # memory (a column-major array: the one-hot inputs set by row and column, not by flat position)
    ref = pre.transform(new)
    for out in (np.full(ref.shape, 7, np.float32), np.full(ref.shape, 7, np.float32, order="F")):
        assert pre.transform(new, out=out) is out
        np.testing.assert_array_equal(out, ref)
    unseen_color = pre.transform(new.iloc[:1])[0, [i for i, n in enumerate(pre.inputs) if n.startswith("color_")]]
    assert unseen_color.sum() == 0  # no color was rare: an unseen one sets no input

    train = _train_frame(path, data)
    whole = ColumnTransformer([(name, clone(pre.part(name)), cols) for name, _, cols in pre.transformer.transformers_
                               if name != "remainder"], sparse_threshold=1.0, verbose_feature_names_out=False)
    whole.fit(pre.frame(train))
    old = Preprocessing.load(_saved(tmp_path / "run", pre))
    old.transformer = whole
    np.testing.assert_array_equal(old.transform(new), pre.transform(new))

    if numeric == "standard":
        imputer = pre.part("numeric").named_steps["simpleimputer"]
        reference = SimpleImputer(strategy="median", keep_empty_features=True).fit(pre.numeric_matrix(train))
        np.testing.assert_array_equal(imputer.statistics_, reference.statistics_)


def _saved(run_dir: Path, pre: Preprocessing) -> Path:
    run_dir.mkdir()
    pre.save(run_dir)
    return run_dir
