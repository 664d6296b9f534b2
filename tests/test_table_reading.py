"""A user's table at its edges, read in-process: values no float32 holds, targets no model can
learn, too few rows, blank lines above the header, paths that are not files, repeated or
mistyped column names; each either works as documented or is refused with the real cause."""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest

from mlpkit import ConfigError, load_dataset
from mlpkit.data.preprocess import Preprocessing
from mlpkit.data.table import header_of, iter_chunks, read_table

from conftest import good_csv, write_csv


def _features(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    return x, z, (x + 0.3 * z > 0).astype(int)


def _column(data, name):
    return next(c for c in data.preprocessing.columns if c.name == name)


# ---------------------------------------------------------------------------
# Values beyond float32: counted as missing, or scaled, never silently lost


SPECIAL = {3: "inf", 7: "-inf", 11: "Infinity", 15: "1e35", 19: "-1e300"}


def _special_csv(path, n=60):
    x, z, label = _features(n)
    cells = [SPECIAL.get(i, f"{v:.6f}") for i, v in enumerate(x)]
    cells[21] = "NA"
    return write_csv(path, ["x", "z", "label"], zip(cells, (f"{v:.6f}" for v in z), label))


def test_infinite_and_huge_feature_values_are_counted_and_said(tmp_path):
    data = load_dataset("csv", path=str(_special_csv(tmp_path / "s.csv")), target="label")
    col = _column(data, "x")
    assert (col.out_of_range, col.missing, col.inputs) == (5, 6, 2)  # 5 out of range + 1 NA; an indicator
    note = next(n for n in data.notes if "infinite or out-of-range" in n)
    assert note.startswith("column 'x': 5 infinite or out-of-range values (inf, -inf, 1e+35, ...)")
    assert "treated as missing (out of range: over 1e+30 times the column's typical size)" in note
    row = next(line for line in data.columns_table.splitlines() if line.startswith("x "))
    assert row.split()[2] == "6"  # the column table's missing count includes them
    for split in ("train", "val", "test"):
        assert np.isfinite(getattr(data, f"X_{split}").numpy()).all()


def test_predict_reading_counts_out_of_range_values_as_training_did(tmp_path):
    path = _special_csv(tmp_path / "s.csv")
    data = load_dataset("csv", path=str(path), target="label")
    run = tmp_path / "run"
    run.mkdir()
    data.preprocessing.save(run)
    pre = Preprocessing.load(run)
    assert _column(data, "x").scale == next(c for c in pre.columns if c.name == "x").scale
    counted, rows = 0, 0
    for chunk in iter_chunks(str(path), ["x", "z"], chunk_rows=17):
        counted += sum(n for n, _ in pre.out_of_range(chunk).values())
        assert np.isfinite(pre.transform(chunk, first_line=2 + rows)).all()
        rows += len(chunk)
    assert counted == _column(data, "x").out_of_range == 5


def test_without_standardisation_values_beyond_1e30_are_missing_and_said(tmp_path):
    x, z, label = _features()
    path = write_csv(tmp_path / "t.csv", ["x", "big", "label"], zip(x, (f"{v * 1e35:g}" for v in z), label))
    data = load_dataset("csv", path=str(path), target="label", standardize=False)
    assert _column(data, "big").out_of_range == 60
    assert any("'big': 60 infinite or out-of-range values" in n and "data.standardize=false: beyond 1e+30" in n
               for n in data.notes)
    assert np.isfinite(data.X_train.numpy()).all()


@pytest.mark.parametrize("factor", [1e300, 1e-300, 3e38])
def test_a_column_scaled_far_beyond_float32_gives_the_inputs_of_the_column(tmp_path, factor):
    x, z, label = _features(200, seed=1)
    path = write_csv(tmp_path / "big.csv", ["x", "big", "z", "label"],
                     ([f"{a:.17g}", f"{a * factor:.17g}", f"{c:.17g}", k] for a, c, k in zip(x, z, label)))
    data = load_dataset("csv", path=str(path), target="label")
    assert _column(data, "big").kind == "numeric" and _column(data, "big").out_of_range == 0
    inputs = data.preprocessing.inputs
    for split in ("train", "val", "test"):
        X = getattr(data, f"X_{split}").numpy()
        np.testing.assert_allclose(X[:, inputs.index("big")], X[:, inputs.index("x")], rtol=1e-6, atol=1e-6)
    assert not any("out-of-range" in n for n in data.notes)


def test_a_regression_target_of_tiny_values_keeps_its_spread(tmp_path):
    x, z, _ = _features(100)
    y = 1e-300 * (3 * x + z)
    path = write_csv(tmp_path / "t.csv", ["x", "z", "y"], ((f"{a:.6f}", f"{c:.6f}", f"{b:.17g}") for a, c, b in zip(x, z, y)))
    data = load_dataset("csv", path=str(path), target="y")
    train = y[data.rows["train"]]
    np.testing.assert_allclose(data.y_std, 1e-300 * np.std(train / 1e-300), rtol=1e-9)
    np.testing.assert_allclose(data.y_train.numpy().std(), 1.0, rtol=1e-5)  # standardised, not all ~0


def test_a_feature_of_numbers_with_a_word_names_its_line(tmp_path):
    x, z, label = _features(100)
    cells = [f"{v:.3f}" for v in z]
    cells[8] = "oops"
    data = load_dataset("csv", path=str(write_csv(tmp_path / "t.csv", ["x", "z", "label"], zip(x, cells, label))),
                        target="label")
    assert any("'z' holds numbers but also text such as 'oops' (at line 10)" in w for w in data.warnings)


# ---------------------------------------------------------------------------
# Targets no model can learn


@pytest.mark.parametrize("bad, labels, shown", [
    ("1e308", False, "1e+308"), ("inf", False, "inf"), ("-Infinity", False, "-inf"),
    ("1e300", True, "1e+300"), ("1e20", False, "1e+20"), ("1e40", True, "1e+40"),
])
def test_a_target_value_no_model_can_learn_is_refused_with_its_line(tmp_path, bad, labels, shown):
    x, z, label = _features()
    y = [str(k) if labels else f"{3 * a + c:.4f}" for a, c, k in zip(x, z, label)]
    y[5] = bad
    path = write_csv(tmp_path / "t.csv", ["x", "z", "y"], zip(x, z, y))
    if bad == "1e20":  # large but finite: a regression target that works
        assert load_dataset("csv", path=str(path), target="y").task == "regression"
        return
    with pytest.raises(ConfigError, match=rf"data.target='y': the target holds {re.escape(shown)} at line 7;"):
        load_dataset("csv", path=str(path), target="y")


@pytest.mark.parametrize("stray", ["n/a?", "12,5x"])
def test_a_numeric_target_with_a_stray_word_names_it_instead_of_making_classes(tmp_path, stray):
    x, z, _ = _features(120)
    y = [f"{10 * a + c:.2f}" for a, c in zip(x, z)]
    y[5] = y[40] = f'"{stray}"' if "," in stray else stray
    path = write_csv(tmp_path / "t.csv", ["x", "z", "price"], zip(x, z, y))
    with pytest.raises(ConfigError) as err:
        load_dataset("csv", path=str(path), target="price")
    message = str(err.value)
    assert f"118 of its 120 values are finite numbers and 2 are not: '{stray}' at line 7, '{stray}' at line 42" in message
    assert "data.task=multiclass" in message and "empty cell" in message
    with pytest.raises(ConfigError, match=r"data.task=regression, but 118 of its 120"):
        load_dataset("csv", path=str(path), target="price", task="regression")
    # said to be classes: the user's call, taken (here 119 classes of one row each, too few to split)
    with pytest.raises(ConfigError, match=r"cannot split 120 rows .* too few rows of the classes .* and \d+ more"):
        load_dataset("csv", path=str(path), target="price", task="multiclass")


@pytest.mark.parametrize("rare, needle", [
    ({0: "rare"}, "too few rows of the class 'rare' (1 row) in the table"),
    ({0: "x", 1: "y"}, "too few rows of the classes 'x' (1 row), 'y' (1 row) in the table"),
])
def test_a_class_too_rare_to_split_is_named(tmp_path, rare, needle):
    """A class of one row cannot be in test and in the rest: the message names it, not the fractions."""
    x, z, label = _features(200)
    y = ["yes" if v else "no" for v in label]
    for row, value in rare.items():
        y[row] = value
    path = write_csv(tmp_path / "t.csv", ["x", "z", "label"], zip(x, z, y))
    with pytest.raises(ConfigError) as err:
        load_dataset("csv", path=str(path), target="label")
    assert needle in str(err.value) and "smaller fractions do not change" in str(err.value), err.value


def test_a_target_of_text_numbers_with_infinity_names_it(tmp_path):
    x, z, _ = _features(120)
    y = [f"{10 * a + c:.2f}" for a, c in zip(x, z)]
    y[5], y[40] = "n/a?", "Infinity"
    path = write_csv(tmp_path / "t.csv", ["x", "z", "price"], zip(x, z, y))
    with pytest.raises(ConfigError, match="118 of its 120 values are finite numbers and 2 are not: 'n/a\\?' at "
                                          "line 7, 'Infinity' at line 42"):
        load_dataset("csv", path=str(path), target="price")


def test_a_target_of_few_integers_and_a_word_stays_classes(tmp_path):
    x, z, label = _features()
    y = [str(k) for k in label]
    y[4] = y[9] = y[30] = y[50] = y[55] = "maybe"
    path = write_csv(tmp_path / "t.csv", ["x", "z", "y"], zip(x, z, y))
    assert load_dataset("csv", path=str(path), target="y").classes == ["0", "1", "maybe"]


# ---------------------------------------------------------------------------
# Too few rows


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_rows_are_blamed_on_the_rows(tmp_path, n):
    path = write_csv(tmp_path / "t.csv", ["a", "b", "label"], ([i, i * 2, "xy"[i % 2]] for i in range(n)))
    with pytest.raises(ConfigError, match=rf"has {n} data rows?: too few for train/val/test splits, "
                                          r"which need at least 3 rows"):
        load_dataset("csv", path=str(path))


def test_too_few_rows_with_a_target_value_say_so(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "b", "y"], [[1, 2, 1.5], [2, 3, ""], [3, 1, ""], [4, 4, 2.5]])
    with pytest.raises(ConfigError, match="has 2 rows with a target value: too few for train/val/test"):
        load_dataset("csv", path=str(path), target="y")


def test_the_rows_needed_follow_the_split_fractions(tmp_path):
    from mlpkit.data.split import min_split_rows, split_rows

    for fractions in [(0.15, 0.15), (0.5, 0.4), (0.1, 0.3), (0.3, 0.1), (0.01, 0.01)]:
        need = min_split_rows(*fractions)
        assert all(len(p) for p in split_rows(np.zeros(need), "regression", *fractions, 0, "t"))
        with pytest.raises(ConfigError):
            split_rows(np.zeros(need - 1), "regression", *fractions, 0, "t")
    path = write_csv(tmp_path / "t.csv", ["a", "b", "y"], ([i, i % 3, i * 0.5] for i in range(9)))
    with pytest.raises(ConfigError, match=r"has 9 data rows: .*at least 10 rows .*data.val_fraction=0.5 and "
                                          r"data.test_fraction=0.4"):
        load_dataset("csv", path=str(path), target="y", val_fraction=0.5, test_fraction=0.4)


# ---------------------------------------------------------------------------
# Blank lines above the header


@pytest.mark.parametrize("name, lead", [
    ("a.csv", "\n"), ("b.csv", "\n\n\n"), ("c.csv", " \t\r\n"), ("d.csv", ",,\n\n"),
    ("e.tsv", "\n"), ("f.tsv", " \t\n\t\t\n"),
])
def test_blank_lines_before_the_header_are_skipped(tmp_path, name, lead):
    sep = "\t" if name.endswith(".tsv") else ","
    x, z, label = _features(40)
    body = "".join(sep.join([f"{a:.4f}", f"{c:.4f}", "ab"[k]]) + "\n" for a, c, k in zip(x, z, label))
    path = tmp_path / name
    path.write_text(lead + sep.join(["x", "z", "label"]) + "\n" + body, newline="")
    skipped = lead.count("\n")
    df, notes = read_table(str(path))
    assert list(df.columns) == ["x", "z", "label"] and len(df) == 40
    assert any(f"{skipped} blank line" in n and f"the header is line {skipped + 1}" in n for n in notes)
    assert header_of(str(path)) == ["x", "z", "label"]  # what predict reads: the same header and rows
    assert sum(len(c) for c in iter_chunks(str(path), ["x", "z"], chunk_rows=15)) == 40
    assert load_dataset("csv", path=str(path), target="label").task == "binary"


def test_line_numbers_count_skipped_lines_and_quoted_newlines(tmp_path):
    path = tmp_path / "t.csv"
    rows = [f'{i},"note {i}{chr(10) + "more" if i == 2 else ""}",{i * 0.5 if i != 6 else "1e308"}' for i in range(30)]
    path.write_text("\n\nx,note,y\n" + "\n".join(rows) + "\n")
    # the header is line 3; rows 0-2 on lines 4-6 with row 2 taking two; row 6 on line 11
    with pytest.raises(ConfigError, match="the target holds 1e\\+308 at line 11;"):
        load_dataset("csv", path=str(path), target="y", drop=["note"])


def test_a_file_of_blank_lines_is_refused_as_such(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n \n,,\n")
    with pytest.raises(ConfigError, match="holds only blank lines"):
        read_table(str(path))


# ---------------------------------------------------------------------------
# Paths that are not a readable table


def _fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def _loop(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _broken(tmp_path):
    path = tmp_path / "link.csv"
    path.symlink_to(tmp_path / "gone.csv")
    return path


def _under_a_file(tmp_path):
    good_csv(tmp_path / "f.csv")
    return tmp_path / "f.csv" / "x.csv"


def _write(content):
    def make(tmp_path):
        path = tmp_path / "t.csv"
        path.write_bytes(content)
        return path
    return make


@pytest.mark.parametrize("make, needle", [
    (_loop, r"is a symbolic link loop"),
    (_broken, r"is a broken symbolic link \(to '.*gone.csv', which does not exist\)"),
    (lambda p: p, r"is a directory"),
    (_fifo, r"is a named pipe \(FIFO\), not a regular file"),
    (lambda p: "/dev/null", r"is a device, not a regular file"),
    (lambda p: p / "absent.csv", r": no such file$"),
    (lambda p: "~/" + os.path.relpath(good_csv(p / "h.csv"), os.path.expanduser("~")),
     r": no such file \(a leading ~ is not expanded here; write '/.*h.csv'\)"),
    (_under_a_file, r"a part of the path before the file name is a file"),
    (_write(b""), r"is empty; it needs a header row and data rows"),
    (_write(b"a,b,label\n"), r"has a header but no data rows"),
    (_write(b"a,b,label\n\n\n"), r"has a header but no data rows"),
    (_write(b"\xef\xbb\xbf"), r"holds only blank lines"),
    (lambda p: "https://example.org/data.csv", r"is a URL; mlpkit reads local files only \(nothing is downloaded\)"),
])
def test_a_path_that_is_not_a_readable_table_says_what_it_is(tmp_path, make, needle):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=r"^data.path='[^']*':? " + needle.lstrip(": ")):
        load_dataset("csv", path=str(path))


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = good_csv(tmp_path / "t.csv")
    real_open = os.open

    def refuse(p, flags, *args):  # root reads every file; the refusal is what a user without rights sees
        if str(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ConfigError, match=r"data.path='.*t.csv' cannot be read \(permission denied\)"):
        load_dataset("csv", path=str(path))


# ---------------------------------------------------------------------------
# Column names: repeats as written, and mistyped names


def test_names_like_v_and_v1_are_two_columns(tmp_path):
    x, z, label = _features()
    path = write_csv(tmp_path / "t.csv", ["v", "v.1", "label"], zip(x, z, label))
    data = load_dataset("csv", path=str(path), target="label")
    assert [c.name for c in data.preprocessing.columns] == ["v", "v.1"]


@pytest.mark.parametrize("header", [["v", "v", "label"], ["v", "v.1", "v", "label"]])
def test_a_name_written_twice_is_refused(tmp_path, header):
    x, z, label = _features()
    rows = ([a, b, *([a + b] if len(header) == 4 else []), k] for a, b, k in zip(x, z, label))
    path = write_csv(tmp_path / "t.csv", header, rows)
    with pytest.raises(ConfigError, match="the column name 'v' appears more than once in the header"):
        load_dataset("csv", path=str(path), target="label")


@pytest.mark.parametrize("kwargs, needle", [
    ({"target": "Survived"}, r"data.target='Survived' is not a column of .* \(did you mean 'survived'\?\)"),
    ({"target": "survivd"}, r"\(did you mean 'survived'\?\)"),
    ({"target": " survived "}, r"\(did you mean 'survived'\?\)"),
    ({"target": "survived", "drop": ["FARE"]}, r"data.drop names 'FARE', .*\(did you mean 'Fare'\?\)"),
    ({"target": "survived", "categorical": ["pclas"]}, r"data.categorical names 'pclas'.*did you mean 'Pclass'"),
    ({"target": "zzz"}, r"data.target='zzz' is not a column of [^(]*; columns: Fare, Pclass, survived$"),
])
def test_a_mistyped_column_name_gets_the_likely_one(tmp_path, kwargs, needle):
    x, z, label = _features()
    path = write_csv(tmp_path / "t.csv", ["Fare", "Pclass", "survived"], zip(x, (int(v > 0) + 1 for v in z), label))
    with pytest.raises(ConfigError, match=needle):
        load_dataset("csv", path=str(path), **kwargs)


def test_predict_py_says_how_many_values_it_treated_as_missing(tmp_path, capsys, monkeypatch):
    """A run trained in-process on a table with inf and huge values, then predict.py's main on the same
    file: the values training counted are counted again, and every prediction is a number."""
    import pandas as pd

    from conftest import compose_config
    from mlpkit.app.cli import train_from_config
    from mlpkit.predict import main

    path = _special_csv(tmp_path / "s.csv")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose_config(["data=csv", f"data.path={path}", "data.target=label", "model.hidden=[4]",
                          "trainer.max_epochs=1", "trainer.progress=false", "trainer.device=cpu"])
    train_from_config(cfg, run_dir)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main([str(run_dir), str(path), "-o", "out.csv"]) in (0, None)
    said = capsys.readouterr().err
    assert "5 infinite or out-of-range values in numeric columns were treated as missing" in said, said
    assert "1 missing values in feature columns" in said, said
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 60 and out["proba_1"].notna().all()


@pytest.mark.parametrize("sep", [",", ";"])
def test_chunks_after_a_late_non_utf8_byte_are_each_read_once(tmp_path, sep):
    """A file that is UTF-8 until a later chunk: predict's reader starts again as Windows-1252 and must
    not hand over the rows it already gave (nor forget decimal commas)."""
    n, late = 40_000, 30_000  # the byte lies beyond the reader's first buffers (256 KB)
    rows = [sep.join([f"{i}{',5' if sep == ';' else '.5'}", "Köln" if i == late else "Bonn"]) for i in range(n)]
    path = tmp_path / "late.csv"
    path.write_bytes((sep.join(["x", "city"]) + "\n" + "\n".join(rows) + "\n").encode("cp1252"))
    pieces = list(iter_chunks(str(path), ["x", "city"], ["city"], chunk_rows=4_000))
    x = np.concatenate([p["x"].to_numpy(dtype=np.float64) for p in pieces])
    np.testing.assert_array_equal(x, np.arange(n) + 0.5)
    assert np.concatenate([p["city"].to_numpy() for p in pieces])[late] == "Köln"


@pytest.mark.parametrize("cells, reason, missing", [
    (["inf", "-inf", ""], "every value is missing or infinite", 60),
    (["5", "inf", "5"], "constant", 20),
])
def test_a_column_of_infinities_is_left_out_as_missing_not_kept(tmp_path, cells, reason, missing):
    x, z, label = _features()
    w = [cells[i % 3] for i in range(60)]
    data = load_dataset("csv", path=str(write_csv(tmp_path / "t.csv", ["x", "w", "label"], zip(x, w, label))),
                        target="label")
    col = _column(data, "w")
    assert (col.kind, col.reason, col.missing) == ("dropped", reason, missing)


def test_predict_reading_refuses_a_needed_column_named_twice(tmp_path):
    path = write_csv(tmp_path / "new.csv", ["x", "x", "z", "other", "other"], [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]])
    with pytest.raises(ConfigError, match="input '.*new.csv': the column name 'x' appears more than once"):
        list(iter_chunks(str(path), ["x", "z"]))
    assert [len(c) for c in iter_chunks(str(path), ["z"])] == [2]  # a repeat it does not read is no matter


def test_new_rows_of_one_column_are_read_for_prediction(tmp_path):
    path = write_csv(tmp_path / "new.csv", ["x"], [[1.5], [2.5]])
    assert list(read_table(str(path), key="input")[0]["x"]) == [1.5, 2.5]
    with pytest.raises(ConfigError, match="has 1 column .* needs at least one feature column and a target"):
        read_table(str(path))


def test_a_column_of_timestamps_keeps_its_seconds(tmp_path):
    """Numbers are used in float64: seconds since 1970 (1.7e9) differ in the last digits, which float32
    (24 bits: steps of 128 there) would round away."""
    x, z, label = _features(200, seed=2)
    t = 1.7e9 + np.arange(200) * 7 % 61
    path = write_csv(tmp_path / "t.csv", ["t", "x", "label"], zip((f"{v:.0f}" for v in t), x, label))
    data = load_dataset("csv", path=str(path), target="label")
    train = t[data.rows["train"]] - 1.7e9
    got = data.X_train.numpy()[:, data.preprocessing.inputs.index("t")]
    np.testing.assert_allclose(got, (train - train.mean()) / train.std(), rtol=1e-5, atol=1e-5)


def test_train_py_refuses_these_tables_with_one_line(tmp_path):
    """Through train.py's own checks (in-process): the same messages, before any run directory fills."""
    from conftest import refusal

    loop = _loop(tmp_path)
    assert "is a symbolic link loop" in refusal(["data=csv", f"data.path={loop}", "data.target=label"])
    x, z, label = _features()
    path = write_csv(tmp_path / "t.csv", ["x", "z", "survived"], zip(x, z, label))
    said = refusal(["data=csv", f"data.path={path}", "data.target=Survived"], tmp_path / "run")
    assert "did you mean 'survived'?" in said and "\n" not in said
    one = write_csv(tmp_path / "one.csv", ["x", "z", "survived"], [[1, 2, 0]])
    said = refusal(["data=csv", f"data.path={one}", "data.target=survived"], tmp_path / "run1")
    assert "has 1 data row: too few for train/val/test splits, which need at least 3 rows" in said


@pytest.mark.parametrize("header", ["[x],{z},label", "[x, unit],z,label", "{x},z,label"])
def test_a_header_that_opens_with_a_bracket_is_a_table_not_json(tmp_path, header):
    """JSON is refused (tests/test_errors.py); a header whose first name starts with [ or { is still a header."""
    x, z, label = _features(40)
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + "".join(f'"{a:.4f}",{c:.4f},{"ab"[k]}\n' for a, c, k in zip(x, z, label)))
    df, _ = read_table(str(path))
    assert len(df) == 40 and len(df.columns) == (4 if header.startswith("[x, unit]") else 3)


def test_semicolon_files_read_decimal_commas_with_thousands_dots(tmp_path):
    """1.234,56 and 3,5 in a `;` column: numbers, in training and in predict's chunks alike. 2.000 without a
    decimal comma is what pandas reads in a chunk with no decimal comma (2.0), so a column holding it is
    not converted (it stays text, as before), never read as 2000 in one chunk and 2.0 in another."""
    path = tmp_path / "euro.csv"
    rows = ["1.234,56;1.5;2.000;a", "2,0;2.5;3,5;b", "3,5;3.5;1;a", "12.345.678,9;4.5;2;b", "-4,25;5.5;7;a",
            "7;6.5;8;b"] * 5
    path.write_text("amount;ratio;mixed;label\n" + "\n".join(rows) + "\n")
    df, notes = read_table(str(path))
    assert df["amount"].tolist()[:6] == [1234.56, 2.0, 3.5, 12345678.9, -4.25, 7.0]
    assert df["ratio"].tolist()[:2] == [1.5, 2.5]
    assert df["mixed"].tolist()[:2] == ["2.000", "3,5"]  # not converted: 2.000 is ambiguous
    assert any(n.startswith("decimal commas (3,14; with thousands dots 1.234,56) read as numbers in: amount")
               for n in notes)
    chunks = list(iter_chunks(str(path), ["amount"], chunk_rows=4))
    assert [v for c in chunks for v in c["amount"].tolist()] == df["amount"].tolist()


# ---------------------------------------------------------------------------
# Compressed text files: read as they are, recognised by their first bytes


def _compressed(path, plain_text: str, how: str):
    """`plain_text` written to `path` compressed as `how` (gzip, bz2, xz or zip)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    data = plain_text.encode()
    if how == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("table.csv", data)
    else:
        path.write_bytes({"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[how](data))
    return path


@pytest.mark.parametrize("name, how", [("t.csv.gz", "gzip"), ("t.csv.bz2", "bz2"), ("t.csv.xz", "xz"),
                                       ("t.zip", "zip"), ("t.csv", "gzip"), ("t.tsv.gz", "gzip")])
def test_a_compressed_table_reads_as_the_plain_file(tmp_path, name, how):
    """Training's reader, predict.py's chunks and the header: the same values as the file uncompressed, a
    gzip file named .csv included (pandas would guess from the name); no line numbers are counted in it."""
    import pandas as pd

    plain = good_csv(tmp_path / "plain.csv")
    text = plain.read_text()
    if name.startswith("t.tsv"):
        text = text.replace(",", "\t")
    path = _compressed(tmp_path / name, text, how)
    want, _ = read_table(str(plain))
    got, notes = read_table(str(path))
    pd.testing.assert_frame_equal(got, want)
    assert header_of(str(path)) == list(want.columns)
    chunks = pd.concat(list(iter_chunks(str(path), list(want.columns), chunk_rows=7)), ignore_index=True)
    pd.testing.assert_frame_equal(chunks, want)
    from mlpkit.data.table import line_of

    assert line_of(got, 4) == "data row 5"


def test_a_model_trained_on_a_gzip_table_predicts_an_xz_one_as_the_plain_file(tmp_path, capsys, monkeypatch):
    from conftest import compose_config
    from mlpkit.app.cli import train_from_config
    from mlpkit.predict import main

    plain = good_csv(tmp_path / "plain.csv")
    gz = _compressed(tmp_path / "t.csv.gz", plain.read_text(), "gzip")
    xz = _compressed(tmp_path / "new.csv.xz", plain.read_text(), "xz")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose_config(["data=csv", f"data.path={gz}", "model.hidden=[4]", "trainer.max_epochs=1",
                          "trainer.progress=false", "trainer.device=cpu"])
    train_from_config(cfg, run_dir)
    monkeypatch.chdir(tmp_path)
    for source, out in ((xz, "a.csv"), (plain, "b.csv")):
        assert main([str(run_dir), str(source), "-o", out]) in (0, None)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert xz.read_bytes() == _compressed(tmp_path / "again.csv.xz", plain.read_text(), "xz").read_bytes()


def _archive(tmp_path, members):
    import zipfile

    path = tmp_path / "t.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


@pytest.mark.parametrize("make, needle", [
    (lambda d: _archive(d, {"a.csv": "x,label\n1,0\n", "b.csv": "x,label\n1,0\n"}),
     "is a zip archive of 2 files; a zipped table must hold exactly one"),
    (lambda d: _archive(d, {"[Content_Types].xml": "<x/>", "xl/workbook.xml": "<x/>"}),
     "is an Excel workbook, not a table of delimited text; save it as CSV"),
    (lambda d: (d / "t.csv.gz").write_bytes(__import__("gzip").compress(b"x,label\n1,0\n" * 10)[:20]) and
     d / "t.csv.gz", "is a damaged gzip file (EOFError"),
    (lambda d: (d / "t.csv").write_bytes(b"PK\x03\x04\x00\x00\xff") and d / "t.csv", "starts as a zip archive does but cannot be opened as one"),
    (lambda d: (d / "t.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00") and d / "t.xls",
     "it holds binary data (an Excel workbook?)"),
])
def test_an_archive_that_is_not_one_table_is_refused_saying_what_it_is(tmp_path, make, needle):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_table(str(path))
    assert needle in str(err.value) and "\n" not in str(err.value), err.value


@pytest.mark.parametrize("write", [lambda v: f"${v:,.2f}", lambda v: f"{v:,.2f}", lambda v: f"{v / 100:.2f}%"])
def test_a_target_of_formatted_numbers_is_a_regression_on_the_numbers(tmp_path, write):
    """'$12,345.67', '12,345.67' or '123.46%' in the target: read as the numbers (as in a feature column), so
    the run equals one on the same numbers written plainly, and predict's target reading gives them too."""
    import pandas as pd

    from mlpkit.predict import load_run

    x, z, _ = _features(200)
    y = np.round(20000 + 5000 * x + 300 * z, 2)
    fancy = tmp_path / "fancy.csv"
    pd.DataFrame({"x": x, "z": z, "price": [write(v) for v in y]}).to_csv(fancy, index=False)  # quoted
    written = pd.read_csv(fancy, dtype=str)["price"].str.replace(r"[$,%]", "", regex=True).astype(float)
    plain = write_csv(tmp_path / "plain.csv", ["x", "z", "price"], zip(x, z, written))
    a = load_dataset("csv", path=str(fancy), target="price")
    b = load_dataset("csv", path=str(plain), target="price")
    assert a.task.name == "regression"
    for key in ("y_train", "y_val", "y_test", "X_train"):
        np.testing.assert_array_equal(getattr(a, key).numpy(), getattr(b, key).numpy())
    assert any("the target 'price' holds numbers written with a currency sign" in n for n in a.notes), a.notes

    from conftest import compose_config
    from mlpkit.app.cli import train_from_config

    run = tmp_path / "run"
    run.mkdir()
    train_from_config(compose_config(["data=csv", f"data.path={fancy}", "data.target=price", "model.hidden=[4]",
                                      "trainer.max_epochs=1", "trainer.progress=false", "trainer.device=cpu"]), run)
    column = pd.read_csv(fancy, dtype=str)["price"]
    column[3] = None  # a missing target stays missing
    got = load_run(run).target_indices(column)
    want = written.to_numpy(np.float64, copy=True)
    want[3] = np.nan
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("labels", [["10%", "20%"], ["$5", "$10", "$20"]])
def test_a_target_of_few_formatted_values_stays_classes(tmp_path, labels):
    x, z, label = _features(120)
    y = [labels[i % len(labels)] for i in range(120)]
    path = write_csv(tmp_path / "t.csv", ["x", "z", "level"], zip(x, z, y))
    data = load_dataset("csv", path=str(path), target="level")
    assert data.task.classification and sorted(data.classes) == sorted(labels)


# ---------------------------------------------------------------------------
# Rows with a field more than the header: never a silent shift of the columns


def test_lines_ending_in_a_delimiter_read_as_the_clean_file(tmp_path, recwarn):
    """Every data line ends with ',' (the header does not): pandas would make the first column the index and
    shift every other one left; the table reads as the same file without the trailing commas, in memory
    and in predict.py's chunks, with no warning printed."""
    import pandas as pd

    x, z, label = _features(40)
    lines = ["x,z,label"] + [f"{a:.5f},{b:.5f},{c}," for a, b, c in zip(x, z, label)]
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("\n".join(lines) + "\n")
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join(line.rstrip(",") for line in lines) + "\n")
    want, _ = read_table(str(clean))
    got, _ = read_table(str(trailing))
    pd.testing.assert_frame_equal(got, want)
    chunks = pd.concat(list(iter_chunks(str(trailing), ["x", "z", "label"], chunk_rows=7)), ignore_index=True)
    pd.testing.assert_frame_equal(chunks, want)
    assert not [w for w in recwarn if issubclass(w.category, pd.errors.ParserWarning)]


@pytest.mark.parametrize("rows, line", [
    (["0.5,1,$20,429.59", "0.7,2,$1,000.00"], 2),  # every row: the first decides, pandas would shift
    (["0.5,1,20.5", "0.7,2,$1,000.00"], 3),  # a later row: pandas' own error, explained
    (["", "0.5,1,$20,429.59"], 3),  # after a blank line, which pandas skips
    (["0.5,1,20.5,", "0.7,2,30.1,", "0.9,3,4.0,oops"], 4),  # lines ending in a delimiter, one with a value there
])
def test_a_value_holding_the_delimiter_without_quotes_is_refused_naming_its_line(tmp_path, rows, line):
    path = tmp_path / "t.csv"
    path.write_text("\n".join(["x,n,price", *rows]) + "\n")
    needle = f"line {line} has 4 fields where the header names 3 columns: a value that holds the delimiter"
    for read in (lambda: read_table(str(path)), lambda: list(iter_chunks(str(path), ["x", "n", "price"]))):
        try:
            read()
        except ConfigError as err:
            said = str(err)
        except Exception as err:  # predict.py's chunks: a pandas error that its _reading turns into one line
            from mlpkit.data.table import read_error_detail

            said = read_error_detail(err)
        else:
            raise AssertionError("read without an error")
        assert needle in said and "needs quotes" in said, said


def test_a_title_line_above_the_header_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Sales report 2024\n\nx,n,price\n0.5,1,2\n0.7,2,3\n")
    with pytest.raises(ConfigError, match=r"the first line \('Sales report 2024'\) has one field and line 3 has 3: "
                                          "if the header is on a later line, delete the lines above it"):
        read_table(str(path))


def test_classic_mac_line_ends_read_as_the_clean_file(tmp_path):
    """Lines ended by a carriage return alone: read as pandas reads them, in memory and in chunks, and a
    row with a field too many is still found in them."""
    import pandas as pd

    clean = good_csv(tmp_path / "clean.csv")
    mac = tmp_path / "mac.csv"
    mac.write_bytes(clean.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    want, _ = read_table(str(clean))
    got, _ = read_table(str(mac))
    pd.testing.assert_frame_equal(got, want)
    chunks = pd.concat(list(iter_chunks(str(mac), list(want.columns), chunk_rows=9)), ignore_index=True)
    pd.testing.assert_frame_equal(chunks, want)
    shifted = tmp_path / "shifted.csv"
    shifted.write_bytes(b"x,n,price\r0.5,1,$20,429.59\r0.7,2,$1,000.00\r")
    with pytest.raises(ConfigError, match="line 2 has 4 fields where the header names 3 columns"):
        read_table(str(shifted))


@pytest.mark.parametrize("directive, sep", [("sep=;", ";"), ('"sep=,"', ","), ("sep=\t", "\t")])
def test_excels_sep_line_names_the_delimiter_and_is_not_a_row(tmp_path, directive, sep):
    import pandas as pd

    clean = good_csv(tmp_path / "clean.csv")
    body = clean.read_text().replace(",", sep)
    path = tmp_path / "excel.csv"
    path.write_text(directive + "\r\n" + body)
    want, _ = read_table(str(clean))
    got, notes = read_table(str(path))
    pd.testing.assert_frame_equal(got, want)
    assert any(f"the line 'sep={sep}' (Excel's way to name the delimiter) is not a row; the header is line 2" in n
               for n in notes), notes
    chunks = pd.concat(list(iter_chunks(str(path), list(want.columns), chunk_rows=11)), ignore_index=True)
    pd.testing.assert_frame_equal(chunks, want)


def test_a_word_among_formatted_target_numbers_is_named_with_its_line(tmp_path):
    import pandas as pd

    x, z, _ = _features(120)
    price = [f"${20000 + 5000 * a + 300 * b:,.2f}" for a, b in zip(x, z)]
    price[40] = "call us"
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": x, "z": z, "price": price}).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"119 of its 120 values are finite numbers and 1 is not: 'call us' at "
                                          r"line 42\. Write a missing value as an empty cell"):
        load_dataset("csv", path=str(path), target="price")
