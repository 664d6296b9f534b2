"""A user's own table, read in-process: delimiters, encodings, missing markers, quoted fields,
column roles, and the preprocessing compared with scikit-learn's ColumnTransformer fitted by hand."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from mlpkit import ConfigError, load_dataset
from mlpkit.data.preprocess import Preprocessing

from conftest import messy_table, train_in_process

# inputs per column of conftest.messy_table with defaults: what the ColumnTransformer makes of it
EXPECTED_INPUTS = {"id": 1, "island": 4, "sex": 3, "bill length": 2, "mass": 1, "zip": 1, "member": 2}


def _roles(data):
    return {c.name: c for c in data.preprocessing.columns}


@pytest.mark.parametrize("sep, bom", [(",", False), (",", True), (";", True), ("\t", False)])
def test_messy_table_columns_get_their_roles(tmp_path, sep, bom):
    path = messy_table(tmp_path / ("t.tsv" if sep == "\t" else "t.csv"), sep=sep, bom=bom)
    data = load_dataset("csv", path=str(path), target="species")
    roles = _roles(data)
    assert data.task == "multiclass" and data.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert roles["name"].kind == "dropped" and "identifier" in roles["name"].reason
    assert roles["comment"].kind == "dropped" and "identifier" in roles["comment"].reason  # quoted, delimiters inside
    assert roles["const"].kind == "dropped" and roles["const"].reason == "constant"
    assert (roles["island"].kind, roles["island"].categories) == ("category", 3)
    assert roles["member"].kind == "boolean" and roles["zip"].kind == "numeric"
    assert {c.name: c.inputs for c in roles.values() if c.inputs} == EXPECTED_INPUTS
    assert data.in_dim == sum(EXPECTED_INPUTS.values())
    assert len(data.X_train) + len(data.X_val) + len(data.X_test) == 300
    assert any("'id' counts the rows" in w and "data.drop=[id]" in w for w in data.warnings)
    assert any("'name' is left out" in n for n in data.notes)
    assert "island" in data.columns_table and "left out: constant" in data.columns_table


def test_missing_markers_are_counted_exactly(tmp_path):
    import pandas as pd

    path = messy_table(tmp_path / "t.csv")
    raw = pd.read_csv(path, keep_default_na=False, dtype=str)
    marked = raw["bill length"].isin(["", "NA", "null"]).sum()
    data = load_dataset("csv", path=str(path), target="species")
    assert _roles(data)["bill length"].missing == marked > 0
    assert _roles(data)["island"].missing == raw["island"].isin(["", "NA"]).sum() > 0


def test_drop_and_categorical_change_the_roles(tmp_path):
    path = messy_table(tmp_path / "t.csv")
    data = load_dataset("csv", path=str(path), target="species", drop=["id"], categorical=["zip"])
    roles = _roles(data)
    assert roles["id"].kind == "dropped" and roles["id"].reason == "data.drop"
    assert (roles["zip"].kind, roles["zip"].codes, roles["zip"].inputs) == ("category", "number", 3)
    assert not data.warnings


@pytest.mark.parametrize("kwargs, needle", [
    ({"drop": ["nmae"]}, r"data.drop names 'nmae'.*did you mean 'name'"),
    ({"categorical": ["zipp"]}, r"data.categorical names 'zipp'.*did you mean 'zip'"),
    ({"drop": ["species"]}, "target"),
    ({"target": "specie"}, "data.target='specie' is not a column"),
])
def test_bad_column_names_are_named(tmp_path, kwargs, needle):
    path = messy_table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match=needle):
        load_dataset("csv", path=str(path), **{"target": "species", **kwargs})


def test_rows_without_a_target_are_left_out_and_counted(tmp_path):
    import pandas as pd

    path = messy_table(tmp_path / "t.csv", n=200)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[[2, 49, 119], "species"] = ""
    frame.to_csv(path, index=False)
    data = load_dataset("csv", path=str(path), target="species")
    assert any("3 of 200 rows have no value in the target column 'species'" in n for n in data.notes)
    assert sum(len(r) for r in data.rows.values()) == 197
    assert not {2, 49, 119} & set(np.concatenate(list(data.rows.values())).tolist())


def test_preprocessing_equals_a_column_transformer_fitted_on_the_train_rows(tmp_path):
    """The reference: scikit-learn's own pipeline, fitted by hand on the run's train rows."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    path = messy_table(tmp_path / "t.csv")
    data = load_dataset("csv", path=str(path), target="species", drop=["id"], seed=3)
    df = pd.read_csv(path)
    numeric, cats = ["bill length", "mass", "zip"], ["island", "sex", "member"]
    for c in cats:
        df[c] = df[c].astype(object).where(df[c].notna(), np.nan).map(lambda v: v if v != v else str(v))
    ref = ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("c", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                            OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5,
                                          sparse_output=False)), cats)])
    ref.fit(df.iloc[data.rows["train"]])
    for split in ("train", "val", "test"):
        expected = ref.transform(df.iloc[data.rows[split]])
        got = getattr(data, f"X_{split}").numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the train split is what the statistics came from: standardised columns have mean 0 there
    np.testing.assert_allclose(data.X_train.numpy()[:, 0].mean(), 0.0, atol=1e-5)


def test_parquet_reads_as_the_csv_does(tmp_path):
    import pandas as pd

    csv_path = messy_table(tmp_path / "t.csv")
    frame = pd.read_csv(csv_path, na_values=["?"])
    pq_path = tmp_path / "t.parquet"
    frame.to_parquet(pq_path)
    a = load_dataset("csv", path=str(csv_path), target="species", drop=["id"])
    b = load_dataset("csv", path=str(pq_path), target="species", drop=["id"])
    assert a.preprocessing.inputs == b.preprocessing.inputs
    np.testing.assert_array_equal(a.X_train.numpy(), b.X_train.numpy())
    # text columns stored dictionary-encoded (pandas categories), listed in reverse order of first appearance
    text = [c for c in frame.columns if frame[c].dtype.kind not in "iufb"]
    for c in text:
        frame[c] = pd.Categorical(frame[c], categories=list(pd.unique(frame[c].dropna()))[::-1])
    frame.to_parquet(pq_path)
    for kw in ({}, {"numeric": "robust", "onehot_max": 3}):
        a = load_dataset("csv", path=str(csv_path), target="species", drop=["id"], **kw)
        c = load_dataset("csv", path=str(pq_path), target="species", drop=["id"], **kw)
        assert a.preprocessing.inputs == c.preprocessing.inputs
        np.testing.assert_array_equal(a.X_train.numpy(), c.X_train.numpy())
        np.testing.assert_array_equal(a.y_train.numpy(), c.y_train.numpy())


def test_parquet_decimals_are_numbers_and_lists_or_records_are_left_out(tmp_path):
    """A decimal128 column is read as the same numbers written in a CSV file (not as Python Decimal objects,
    which would make it a category), by training and by predict.py's chunks; list and struct columns,
    which hold no one value per row, are left out with a note instead of failing on unhashable values."""
    import decimal

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlpkit.data.table import iter_chunks

    rng = np.random.default_rng(3)
    n = 120
    x = np.round(rng.normal(size=n), 2)
    label = np.where(x + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "price": pa.array([decimal.Decimal(f"{v:.2f}") for v in x], pa.decimal128(8, 2)),
        "tags": pa.array([[1, 2]] * (n // 2) + [[3]] * (n - n // 2)),
        "where": pa.array([{"a": 1, "b": float(v)} for v in x]),
        "label": label}), path)
    pd.DataFrame({"price": x, "label": label}).to_csv(tmp_path / "t.csv", index=False)
    data = load_dataset("csv", path=str(path), target="label")
    roles = _roles(data)
    assert roles["price"].kind == "numeric"
    assert (roles["tags"].kind, roles["where"].kind) == ("dropped", "dropped")
    assert any("'tags' is left out: it holds lists or records" in note for note in data.notes), data.notes
    plain = load_dataset("csv", path=str(tmp_path / "t.csv"), target="label")
    np.testing.assert_array_equal(data.X_train.numpy(), plain.X_train.numpy())
    chunk = next(iter_chunks(str(path), ["price"], chunk_rows=50))
    assert chunk["price"].dtype == np.float64 and chunk["price"].tolist() == x[:50].tolist()


def test_a_parquet_files_named_index_is_a_column_and_row_labels_are_not(tmp_path):
    """df.set_index("island").to_parquet(...): pandas would read 'island' back as the frame's index, which
    mlpkit would never see; it is a column, in memory and in predict.py's chunks. The row labels of a
    filtered frame (an unnamed index) are not a column."""
    import pandas as pd

    from mlpkit.data.table import iter_chunks, read_table

    frame = pd.read_csv(messy_table(tmp_path / "t.csv"), na_values=["?"])
    frame.set_index("island").to_parquet(tmp_path / "named.parquet")
    frame[frame["mass"] > frame["mass"].median()].to_parquet(tmp_path / "filtered.parquet")
    named, _ = read_table(str(tmp_path / "named.parquet"))
    assert sorted(named.columns) == sorted(frame.columns)
    pd.testing.assert_frame_equal(named[list(frame.columns)], frame)
    chunk = next(iter_chunks(str(tmp_path / "named.parquet"), ["island", "mass"], chunk_rows=1000))
    assert chunk["island"].tolist() == frame["island"].tolist()
    filtered, _ = read_table(str(tmp_path / "filtered.parquet"))
    assert list(filtered.columns) == list(frame.columns)


def test_a_file_that_is_not_utf8_is_read_as_windows_1252_with_a_note(tmp_path):
    path = tmp_path / "latin.csv"
    rows = ["city,temp,label"] + [f"{['Zürich', 'Besançon', 'Köln'][i % 3]},{i % 11},{'ab'[i % 2]}" for i in range(60)]
    path.write_bytes("\n".join(rows).encode("cp1252"))
    data = load_dataset("csv", path=str(path), target="label")
    assert any("not UTF-8" in n and "cp1252" in n for n in data.notes)
    assert "city_Besançon" in data.preprocessing.inputs


def test_utf16_with_a_bom_is_read(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_text("a\tb\tlabel\n" + "".join(f"{i}\t{i % 5}.5\t{'xy'[i % 2]}\n" for i in range(40)),
                    encoding="utf-16")
    data = load_dataset("csv", path=str(path), target="label")
    assert data.in_dim == 2 and data.task == "binary"


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"),
    (b"a,b,label\n", "no data rows"),
    (b"\x00\x01\x02PK garbage\xff\xfe", "not a readable"),
])
def test_unreadable_files_are_config_errors(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle):
        load_dataset("csv", path=str(path))


@pytest.mark.parametrize("where, needle", [("dir", "is a directory"), ("/dev/zero", "not a regular file")])
def test_a_path_that_is_not_a_file_says_what_it_is(tmp_path, where, needle):
    path = tmp_path if where == "dir" else where
    with pytest.raises(ConfigError, match=needle):
        load_dataset("csv", path=str(path))


def test_only_left_out_columns_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,label\n" + "".join(f"n{i},{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(ConfigError, match=r"no feature column is left.*'name' \(identifier"):
        load_dataset("csv", path=str(path))


# ---------------------------------------------------------------------------
# What the run directory holds is loaded without running anyone's code


def _saved_table_run(tmp_path):
    path = messy_table(tmp_path / "t.csv", n=120)
    data = load_dataset("csv", path=str(path), target="species")
    run = tmp_path / "run"
    run.mkdir()
    data.preprocessing.save(run)
    return run, data


def test_preprocessing_round_trips_through_the_run_directory(tmp_path):
    import pandas as pd

    run, data = _saved_table_run(tmp_path)
    loaded = Preprocessing.load(run)
    assert json.loads((run / "preprocessing.json").read_text())["classes"] == data.classes
    frame = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_array_equal(loaded.transform(frame.iloc[data.rows["test"]]), data.X_test.numpy())


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('MLPKIT_MARKER', '/tmp/mlpkit-marker')}",))


def test_a_crafted_preprocessing_file_runs_no_code(tmp_path, monkeypatch):
    import skops.io as sio

    run, _ = _saved_table_run(tmp_path)
    marker = tmp_path / "marker"
    monkeypatch.setenv("MLPKIT_MARKER", str(marker))
    # a pickle whose loading would run a shell command, under the file name mlpkit reads
    (run / "preprocessing.skops").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ConfigError, match="not a readable mlpkit preprocessing file"):
        Preprocessing.load(run)
    # a real skops file that names a function mlpkit does not trust
    (run / "preprocessing.skops").write_bytes(sio.dumps({"f": os.system}))
    with pytest.raises(ConfigError, match=r"holds types mlpkit does not load \(.*system"):
        Preprocessing.load(run)
    assert not marker.exists()


def test_a_date_column_is_a_number_of_days(tmp_path):
    import pandas as pd

    days = pd.date_range("2007-11-09", periods=60, freq="3D")
    rows = [f"{d:%Y-%m-%d},{i % 7},{'ab'[i % 2]}" for i, d in enumerate(days)]
    path = tmp_path / "d.csv"
    path.write_text("laid,size,label\n" + "\n".join(rows) + "\n2008-02-30,1,a\n")  # one impossible date
    data = load_dataset("csv", path=str(path), target="label", standardize=False)
    col = _roles(data)["laid"]
    bad_in_train = 60 in set(data.rows["train"].tolist())  # the impossible date: missing, so flagged
    assert (col.kind, col.codes, col.date_format) == ("numeric", "date", "%Y-%m-%d")
    assert col.inputs == 1 + bad_in_train
    frame = pd.read_csv(path).iloc[data.rows["train"]]
    expected = (pd.to_datetime(frame["laid"], errors="coerce") - pd.Timestamp("1970-01-01")).dt.days
    got = data.X_train.numpy()[:, data.preprocessing.inputs.index("laid")]
    median = expected.median()
    np.testing.assert_allclose(got, expected.fillna(median).to_numpy(), rtol=1e-6)
    # said, and counted as missing (as the streamed path counts it)
    assert "column 'laid': 1 value is not a date in the format %Y-%m-%d (e.g. '2008-02-30'): treated as missing" \
        in data.notes
    assert col.missing == 1


def test_a_column_of_timestamps_is_a_number_of_days_as_text_dates_are(tmp_path, cli):
    """Parquet timestamps (naive, and with a time zone: counted in UTC) become days since 1970 as text
    dates do; the run applies to the same rows written as CSV (ISO 8601 text) with the same predictions."""
    import pandas as pd

    n = 80
    when = pd.date_range("2019-12-30 22:00", periods=n, freq="17h")
    frame = pd.DataFrame({"at": when, "at_tz": when.tz_localize("Europe/Paris"), "size": np.arange(n) % 7,
                          "label": ["ab"[i % 2] for i in range(n)]})
    frame.loc[3, "at"] = pd.NaT
    frame.to_parquet(tmp_path / "t.parquet")
    data = load_dataset("csv", path=str(tmp_path / "t.parquet"), target="label", standardize=False)
    roles = _roles(data)
    for name in ("at", "at_tz"):
        assert (roles[name].kind, roles[name].codes, roles[name].date_format) == ("numeric", "date", "ISO8601")
        assert f"column {name!r} holds dates and times: used as a number, days since 1970-01-01 (UTC)" in data.notes
    rows = data.rows["train"]
    inputs = data.preprocessing.inputs
    days = ((when - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy()
    got = data.X_train.numpy()
    utc = days - 1 / 24  # 30 Dec to 26 Feb: Paris is one hour ahead of UTC
    np.testing.assert_allclose(got[:, inputs.index("at_tz")], utc[rows], rtol=1e-6)
    present = rows != 3
    np.testing.assert_allclose(got[present, inputs.index("at")], days[rows][present], rtol=1e-6)
    assert roles["at"].missing == 1

    run = tmp_path / "run"
    trained = train_in_process(["data=csv", f"data.path={tmp_path / 't.parquet'}", "data.target=label",
                                "trainer.max_epochs=1", f"hydra.run.dir={run}"], tmp_path)
    assert trained.returncode == 0, trained.describe()
    frame.to_csv(tmp_path / "t.csv", index=False)  # 2019-12-30 22:00:00 and 2019-12-30 22:00:00+01:00
    for name in ("t.parquet", "t.csv"):
        out = cli(run, tmp_path / name, "-o", tmp_path / f"{name}.out.csv")
        assert out.returncode == 0, out.stderr
        assert "not dates" not in out.stdout + out.stderr
    a, b = pd.read_csv(tmp_path / "t.parquet.out.csv"), pd.read_csv(tmp_path / "t.csv.out.csv")
    np.testing.assert_allclose(a["proba_a"], b["proba_a"], rtol=1e-6)


def test_predict_says_how_many_values_of_a_date_column_are_not_dates(tmp_path, cli):
    """A file whose dates are written another way than in training: every such value is missing, and
    predict.py says so with examples, as training does, instead of predicting from medians in silence."""
    import pandas as pd

    days = pd.date_range("2007-11-09", periods=60, freq="3D")
    rows = [f"{d:%Y-%m-%d},{i % 7},{'ab'[i % 2]}" for i, d in enumerate(days)]
    (tmp_path / "d.csv").write_text("laid,size,label\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    trained = train_in_process(["data=csv", f"data.path={tmp_path / 'd.csv'}", "data.target=label",
                                "trainer.max_epochs=1", f"hydra.run.dir={run}"], tmp_path)
    assert trained.returncode == 0, trained.describe()
    other = [f"{d:%d/%m/%Y},{i % 7},{'ab'[i % 2]}" for i, d in enumerate(days[:5])] + ["2008-01-02,3,a"]
    (tmp_path / "new.csv").write_text("laid,size,label\n" + "\n".join(other) + "\n")
    out = cli(run, tmp_path / "new.csv", "-o", tmp_path / "p.csv")
    assert out.returncode == 0, out.stderr
    assert ("column 'laid': 5 values are not dates in the format %Y-%m-%d of the training file (e.g. "
            "'09/11/2007', '12/11/2007', '15/11/2007'): treated as missing, as in training") in out.stdout + out.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 6


def test_the_row_number_warning_gives_an_override_the_shell_takes(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("Unnamed: 0,x,label\n" + "".join(f"{i},{i % 5},{'ab'[i % 2]}\n" for i in range(1, 41)))
    data = load_dataset("csv", path=str(path), target="label")
    assert any("""'data.drop=["Unnamed: 0"]'""" in w for w in data.warnings), data.warnings


@pytest.mark.parametrize("values, fmt", [
    (["01/03/2015", "13/03/2015", "25/12/2020"], "%d/%m/%Y"),  # a day over 12: day first
    (["03/01/2015", "03/13/2015"], "%m/%d/%Y"),
    (["01/02/2003", "02/03/2004"], "%m/%d/%Y"),  # both orders read every value: month first, as pandas
    (["1.2.2003", "25.12.2003"], "%d.%m.%Y"),
    (["2007-11-11 10:00", "2007-11-12 11:30"], "%Y-%m-%d %H:%M"),
    (["2007-11-11", "soon"], None),  # under 95% dates: not a date column
])
def test_the_date_format_is_the_order_of_day_and_month_that_reads_the_values(values, fmt):
    import pandas as pd

    from mlpkit.data.table import _date_format

    assert _date_format(pd.Series(values * 20)) == fmt


def test_numbers_written_with_separators_and_signs_are_numbers(tmp_path, cli):
    """'$5,251', '1,234.50', '52.5%': numbers (not identifiers or categories), with a note; predict.py reads
    them as training did, and the same rows written as plain numbers predict the same."""
    import pandas as pd

    rng = np.random.default_rng(2)
    n = 120
    v = rng.normal(5000, 2000, n)
    label = np.where(v + rng.normal(0, 500, n) > 5000, "hi", "lo")
    written = pd.DataFrame({"amount": [f"{x:,.2f}" for x in v], "price": [f"${x:,.0f}" for x in v],
                            "share": [f"{x / 100:.1f}%" for x in v], "label": label})
    written.loc[5, "amount"] = None
    written.to_csv(tmp_path / "w.csv", index=False)
    data = load_dataset("csv", path=str(tmp_path / "w.csv"), target="label", standardize=False)
    roles = _roles(data)
    assert [roles[c].kind for c in ("amount", "price", "share")] == ["numeric"] * 3
    assert any(n.startswith("column 'price' holds numbers written with a currency sign") for n in data.notes)
    rows = data.rows["train"]
    got = data.X_train.numpy()
    plain = pd.DataFrame({"amount": np.round(v, 2), "price": np.round(v), "share": np.round(v / 100, 1)})
    for name in ("price", "share"):
        np.testing.assert_allclose(got[:, data.preprocessing.inputs.index(name)] * roles[name].scale,
                                   plain[name].to_numpy()[rows], rtol=1e-6)

    run = tmp_path / "run"
    trained = train_in_process(["data=csv", f"data.path={tmp_path / 'w.csv'}", "data.target=label",
                                "trainer.max_epochs=2", f"hydra.run.dir={run}"], tmp_path)
    assert trained.returncode == 0, trained.describe()
    plain.loc[5, "amount"] = np.nan
    plain.assign(label=label).to_csv(tmp_path / "plain.csv", index=False)
    for name in ("w.csv", "plain.csv"):
        out = cli(run, tmp_path / name, "-o", tmp_path / f"{name}.out.csv")
        assert out.returncode == 0, out.stderr
    a, b = pd.read_csv(tmp_path / "w.csv.out.csv"), pd.read_csv(tmp_path / "plain.csv.out.csv")
    np.testing.assert_allclose(a["proba_hi"], b["proba_hi"], rtol=1e-6)
    written.loc[9, "price"] = "about $5,000"  # still text: one line naming it
    written.to_csv(tmp_path / "bad.csv", index=False)
    out = cli(run, tmp_path / "bad.csv", "-o", tmp_path / "bad.out.csv")
    assert out.returncode == 2 and "column 'price' holds the text 'about $5,000' at line 11" in out.stderr


def test_numbers_with_signs_and_one_other_text_are_a_category_with_the_warning():
    import pandas as pd

    from mlpkit.data.table import assign_roles

    df = pd.DataFrame({"price": [f"${(i % 10 + 1) * 1000:,}" for i in range(39)] + ["n/d"], "label": ["a", "b"] * 20})
    roles = assign_roles(df, "label")
    assert roles.columns[0].kind == "category"
    assert any("column 'price' holds numbers but also text such as 'n/d'" in w for w in roles.warnings)


def test_a_wide_tables_column_table_shows_the_columns_worth_reading_and_counts_the_rest():
    import pandas as pd

    from mlpkit.data.table import TABLE_ROWS, assign_roles, format_columns

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(50, 100)), columns=[f"f{i}" for i in range(100)])
    df.loc[::5, "f70"] = np.nan
    df["f3"] = 1.0
    df["colour"] = rng.choice(["red", "blue"], 50)
    df["label"] = rng.choice(["a", "b"], 50)
    columns = assign_roles(df, "label").columns
    lines = format_columns(columns, "label", "binary").splitlines()
    # the constant f3, f70 with missing values and the category first, then plain numbers: 40, in file order
    assert [line.split()[0] for line in lines[2:2 + TABLE_ROWS]] == [f"f{i}" for i in range(38)] + ["f70", "colour"]
    assert lines[2 + TABLE_ROWS] == ("... 61 more columns (61 numeric; every column: preprocessing.json in the run "
                                     "directory)")
    assert lines[3 + TABLE_ROWS].startswith("label ") and "target (binary)" in lines[3 + TABLE_ROWS]
    assert lines[-1].startswith("100 of 101 feature columns used; ")  # (inputs: counted once fitted)
    assert len(format_columns(columns[:TABLE_ROWS], "label", "binary").splitlines()) == TABLE_ROWS + 5  # all
