"""Bad input ends `python train.py` before training: a message that names the bad value, and nothing left
behind (no metrics.json, no checkpoint).

Every case is checked in-process, by the functions `python train.py` runs before its first step
(conftest.refusal). A few cases, one for each stage at which a refusal happens (before Hydra composes,
before the run directory exists, while the data are loaded, before a sweep's first job), also run as
`python train.py`, for what only the process shows: exit status 2, exactly one line
on stderr, no traceback, no run directory left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import torch

from conftest import GROUPS, TINY, good_csv, refusal, train

NO_CUDA = not torch.cuda.is_available()


@dataclass
class Case:
    id: str
    args: List[str]
    needles: List[str]  # each must appear on stderr
    setup: Optional[Callable[[Path], List[str]]] = None  # writes files into the case dir, returns extra args
    only_without_cuda: bool = False


def _csv_case(content: Optional[str], name: str, extra_args=()):
    def setup(d: Path) -> List[str]:
        path = d / name
        if content is not None:
            path.write_text(content)
        return ["data=csv", f"data.path={path}", *extra_args]
    return setup


def _bytes_case(content: bytes, name: str):
    def setup(d: Path) -> List[str]:
        (d / name).write_bytes(content)
        return ["data=csv", f"data.path={d / name}"]
    return setup


def _workbook() -> bytes:
    """The bytes of a zip archive laid out as an .xlsx workbook."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _good_csv_with_target(target: str):
    def setup(d: Path) -> List[str]:
        return ["data=csv", f"data.path={good_csv(d / 'good.csv')}", f"data.target={target}"]
    return setup


BASE = [a for a in TINY if not a.startswith("data")]  # the csv cases choose their own data
UNKNOWN_OPTION = {g: "no_such_option" for g in GROUPS}
UNKNOWN_OPTION["optimizer"] = "adamx"

CASES = [Case(f"unknown-{g}", BASE + [f"{g}={o}"], [f"{g}/{o}"]) for g, o in UNKNOWN_OPTION.items()]
CASES += [
    Case("dropout-1.0", TINY + ["regularization.dropout=1.0"], ["regularization.dropout=1.0"]),
    Case("dropout-neg", TINY + ["regularization.dropout=-0.1"], ["regularization.dropout=-0.1"]),
    Case("lr-neg", TINY + ["optimizer.lr=-1"], ["optimizer.lr=-1"]),
    Case("lr-text", TINY + ["optimizer.lr=abc"], ["optimizer.lr", "abc"]),
    Case("hidden-zero", [a for a in TINY if not a.startswith("model.hidden")] + ["model.hidden=[0,4]"],
         ["model.hidden"]),
    Case("max-epochs-neg", TINY + ["trainer.max_epochs=-1"], ["trainer.max_epochs=-1"]),
    Case("l2-neg", TINY + ["regularization.l2=-0.1"], ["regularization.l2=-0.1"]),
    Case("device-gpu", TINY + ["trainer.device=gpu"], ["trainer.device", "gpu"]),
    Case("device-cuda-without-gpu", TINY + ["trainer.device=cuda"], ["trainer.device", "cuda"],
         only_without_cuda=True),
    Case("csv-without-path", BASE + ["data=csv"], ["data.path"]),
    Case("csv-missing-file", BASE, ["missing.csv"], setup=_csv_case(None, "missing.csv")),
    Case("csv-empty", BASE, ["empty.csv"], setup=_csv_case("", "empty.csv")),
    Case("csv-drop-unknown-column", BASE, ["data.drop", "'nope'"],
         setup=_csv_case("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(30)), "t.csv",
                         ["data.drop=[nope]"])),
    Case("csv-a-directory", BASE + ["data=csv", "data.path=."], ["data.path", "is a directory"]),
    Case("csv-binary-file", BASE, ["bin.csv", "binary"], setup=_bytes_case(b"\x7fELF\x02\x01\x01\x00", "bin.csv")),
    Case("csv-excel-workbook", BASE, ["t.xlsx", "Excel workbook"],
         setup=_bytes_case(_workbook(), "t.xlsx")),
    Case("csv-json-file", BASE, ["t.json", "holds JSON", ".csv, .tsv and .parquet"],
         setup=_csv_case('[{"a": 1, "label": 0}, {"a": 2, "label": 1}]', "t.json")),
    Case("csv-json-lines-named-csv", BASE, ["t.csv", "holds JSON"],
         setup=_csv_case('{"a": 1, "label": 0}\n{"a": 2, "label": 1}\n', "t.csv")),
    Case("csv-comma-in-the-file-name", BASE, ["a,b.csv is one file", "'data.path=\"", "a,b.csv\"'"],
         setup=_csv_case("a,label\n1,0\n", "a,b.csv")),
    Case("csv-comma-in-the-file-name-of-a-sweep", ["-m", *BASE], ["a,b.csv is one file"],
         setup=_csv_case("a,label\n1,0\n", "a,b.csv")),
    Case("csv-equals-in-the-file-name", BASE, ["cannot read the override", "'data.path=\"", "x=y.csv\"'"],
         setup=_csv_case("a,label\n1,0\n", "x=y.csv")),
    Case("drop-on-a-built-in-set", TINY + ["data.drop=[x0]"], ["data.drop", "not a setting of data=classification"]),
    Case("class-weight-unknown", TINY + ["trainer.class_weight=inverse"], ["trainer.class_weight", "balanced"]),
    Case("class-weight-for-regression", BASE + ["data=sine", "trainer.class_weight=balanced"],
         ["trainer.class_weight=balanced", "regression"]),
    Case("csv-unknown-target", BASE, ["data.target", "nope"], setup=_good_csv_with_target("nope")),
    Case("unknown-key", TINY + ["foo=1"], ["foo"]),
    Case("setting-not-of-activation", TINY + ["activation=relu", "activation.alpha=2"], ["activation.alpha"]),
    Case("sweep-with-one-bad-lr", ["-m", *TINY, "optimizer.lr=0.1,-1"], ["optimizer.lr=-1"]),
    # every job of a sweep must be checked before the first runs, the device of each included
    Case("sweep-with-cuda-job-without-gpu", ["-m", *TINY, "trainer.device=cpu,cuda"], ["cuda"],
         only_without_cuda=True),
]


END_TO_END = ["unknown-optimizer", "lr-neg", "csv-drop-unknown-column", "sweep-with-one-bad-lr"]


def _applies(case: Case) -> bool:
    return not (case.only_without_cuda and not NO_CUDA)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_naming_it(case, tmp_path):
    if not _applies(case):
        pytest.skip("a CUDA device is available here")
    args = list(case.args) + (case.setup(tmp_path) if case.setup else [])
    message = refusal(args, run_dir=tmp_path / "run")
    assert message, f"{args} was accepted"
    for needle in case.needles:
        assert needle in message, f"the message does not name {needle!r}: {message!r}"
    assert "\n" not in message, message


def _run_case(root: Path, case: Case):
    d = root / "errors" / case.id
    d.mkdir(parents=True)
    args = list(case.args) + (case.setup(d) if case.setup else [])
    before = sorted(d.rglob("*"))
    return train(args, d), d, before


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.id in END_TO_END], ids=END_TO_END)
def test_bad_input_fails_cleanly_as_a_process(case, tmp_path):
    run, case_dir, before = _run_case(tmp_path, case)
    info = run.describe()
    assert run.returncode == 2, info
    assert "Traceback" not in run.output, info
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlpkit: error: "), info
    for needle in case.needles:
        assert needle in lines[0], f"stderr does not name {needle!r}\n{info}"
    assert sorted(case_dir.rglob("*")) == before, f"the refused run left files behind\n{info}"
