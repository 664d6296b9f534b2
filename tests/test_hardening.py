"""What an attack on the command line, resume and signals tried, and what must hold against it.

In-process (cheap): every bad value is refused by the same functions `python train.py` runs before its
run directory exists, naming the key; a property test draws nonsense for every schema key and every
`+`/`~` form; checkpoint faults are injected at every write and the resumed run must equal an
uninterrupted one (`==`). A handful of `python train.py` runs check what only a process shows: the exit
status, one line on stderr, nothing left under outputs/, a run directory left byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpkit.app.cli import check_command_line, checked_job_config, rewrite_resume_argv, saved_overrides
from mlpkit.app.config import config_groups, schema_keys
from mlpkit.errors import ConfigError

from conftest import compose_config, good_csv, popen_train, read_metrics, refusal, train_mixed

TINY = ["data=classification", "data.n_samples=60", "data.n_features=4", "model.hidden=[4]", "trainer.max_epochs=2",
        "trainer.progress=false"]


# ---------------------------------------------------------------------------
# Values that passed silently or crashed: each refused, naming the key (and the value)

BAD = [
    (["optimizer.lr=inf"], "optimizer.lr=inf"),
    (["activation=leaky_relu", "activation.negative_slope=nan"], "activation.negative_slope"),
    (["activation=elu", "activation.alpha=inf"], "activation.alpha"),
    (["activation=softplus", "activation.beta=0"], "activation.beta"),
    (["activation=prelu", "activation.init=nan"], "activation.init"),
    (["init=normal", "init.std=inf"], "init.std"),
    (["regularization.l2=inf"], "regularization.l2"),
    (["regularization.input_noise=inf"], "regularization.input_noise"),
    (["optimizer=momentum", "optimizer.momentum=inf"], "optimizer.momentum"),
    (["optimizer=momentum", "optimizer.momentum=5"], "optimizer.momentum=5"),
    (["optimizer.eps=inf"], "optimizer.eps"),
    (["optimizer.weight_decay=inf"], "optimizer.weight_decay"),
    (["optimizer=rmsprop", "optimizer.alpha=1"], "optimizer.alpha"),
    (["scheduler=cosine", "scheduler.eta_min=-1"], "scheduler.eta_min"),
    (["scheduler=plateau", "scheduler.min_lr=-1"], "scheduler.min_lr"),
    (["scheduler=step", "scheduler.gamma=inf"], "scheduler.gamma"),
    (["early_stopping.mode=max"], "early_stopping.mode=max"),
    (["early_stopping.min_delta=inf"], "early_stopping.min_delta"),
    (["data.standardize=2"], "data.standardize=2"),
    (["~data"], "~data"),
    (["~optimizer"], "~optimizer"),
    (["~trainer"], "~trainer"),
    (["~seed"], "~seed"),
    (["init=he_normal", "init.std=0.1"], "init.std"),
    (["data=digits", "data.n_samples=50"], "data.n_samples"),
    (["data=moons", "data.path=x.csv"], "data.path"),
    (["early_stopping=none", "early_stopping.patience=5"], "early_stopping.patience"),
    (["model=perceptron", "optimizer.lr=0.1"], "optimizer.lr"),
    (["optimizer=nesterov", "optimizer.dampening=0.5"], "optimizer.dampening"),
    (["optimizer=nesterov", "optimizer.momentum=0"], "optimizer.momentum"),
    (["optimizer=adagrad", "optimizer.lr_decay=-1"], "optimizer.lr_decay"),
    (["optimizer=adagrad", "optimizer.initial_accumulator_value=-1"], "optimizer.initial_accumulator_value"),
    (["model.hidden=[1000000000]"], "memory"),
    (["activation=maxout", "activation.pieces=1000000000"], "activation.pieces=1000000000"),
    (["data=moons", "data.n_samples=100000000000"], "data.n_samples=100000000000"),
    (["data=classification", "data.n_features=1000000000"], "data.n_features=1000000000"),
    (["trainer.num_threads=100000"], "trainer.num_threads"),
    (["trainer.refit_models=0"], "trainer.refit_models=0"),
    (["trainer.refit_models=3"], "trainer.refit=false trains none; add trainer.refit=true"),
    (["optimizer.lr=${oc.env:HOME}"], "optimizer.lr"),
    (["data=blobs", "data.n_classes=25000"], "data.n_classes"),
    (["data=sine", "early_stopping.monitor=val_accuracy"], "val_accuracy"),
    (["early_stopping.monitor=val_accuracy", "early_stopping.mode=min"], "early_stopping.mode=min"),
    (["+trainer.max_epoch=5"], "did you mean trainer.max_epochs"),
    (["+regularization.droput=0.5"], "did you mean regularization.dropout"),
    (["+early_stopping.patiense=3"], "did you mean early_stopping.patience"),
    (["+data.noize=0.3"], "did you mean data.noise"),
    (["+foo=1"], "foo"),
    (["foo=1"], "foo is not a key"),
    (["trainer.max_epoch=5"], "did you mean trainer.max_epochs"),
    (["+trainer.max_epochs=5"], "set it without +"),
    (["+data=moons"], "set it without +"),
    (["optimizer.lr=abc"], "optimizer.lr=abc must be a number"),
    (["trainer.max_epochs=2.5"], "must be an integer"),
    (["activation=0.0"], "choose one of"),
    (["optimizer=adamx"], "optimizer/adamx"),
    (["data=null"], "data=null"),
    (["arch=null"], "leave arch out"),
    (["data=mönds"], "choose one of: and, blobs"),
    (["+resume=/nope"], "resume=/nope"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_is_refused_naming_it(args, needle):
    message = refusal(args)
    assert needle in message, f"{args}: {message!r}"
    assert "\n" not in message


def test_memory_is_estimated_before_allocating():
    message = refusal(["model.hidden=[1000000000]"])
    assert "model.hidden=[1000000000]" in message and "GB of memory" in message and "available" in message


@pytest.mark.parametrize("args", [[], TINY, ["optimizer=nesterov"], ["early_stopping.monitor=val_accuracy"], ["optimizer=rmsprop", "optimizer.alpha=0.9"],
                                  ["scheduler=cosine", "scheduler.eta_min=0.0001"], ["+hydra.job.chdir=false"],
                                  ["early_stopping=none", "early_stopping.monitor=val_accuracy",
                                   "early_stopping.mode=max"], ["model=perceptron", "model.lr=0.5"]],
                         ids=str)
def test_good_values_still_pass(args):
    assert refusal(args) == ""


# ---------------------------------------------------------------------------
# A property test over the whole schema

KEYS = sorted(k for k in schema_keys() if k != "resume")
GROUPS = sorted(config_groups())
nonsense = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["abc", "''", "null", "true", "[]", "[1,-1]", "[0.5,2]", "{a:1}", "1e9999", "-0.0", "${seed}",
                     "${oc.env:HOME}", "${nope}", "mönds", "x.csv", "/dev/zero", "cuda:7"]),
)


@st.composite
def attacks(draw):
    form = draw(st.sampled_from(["", "", "+", "++", "~"]))
    key = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from(GROUPS),
                         st.sampled_from(KEYS).map(lambda k: k[:-1] + "x")))
    return f"~{key}" if form == "~" else f"{form}{key}={draw(nonsense)}", key


def _shrunk(cfg):
    """Training cost bounded (the drawn value was already checked as given)."""
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.trainer.max_epochs = min(cfg.trainer.max_epochs, 2)
        cfg.data.n_samples = min(cfg.data.n_samples or 60, 200)
        cfg.data.n_features = min(cfg.data.n_features, 8) if cfg.data.n_features else None
        cfg.model.hidden = [min(w, 16) for w in cfg.model.hidden]
        if cfg.activation.pieces:
            cfg.activation.pieces = min(cfg.activation.pieces, 4)
    return cfg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attack=attacks())
def test_any_override_trains_or_is_refused_naming_its_key(tmp_path_factory, attack):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mlpkit.app.cli import train_from_config

    override, key = attack
    args = [*TINY, override]
    try:
        check_command_line(args)
        cfg = compose_config(args)
    except ConfigError as err:
        assert key.split(".")[-1] in str(err) and "\n" not in str(err), (override, str(err))
        return
    except (HydraException, OmegaConfBaseException) as err:  # Hydra's own refusal (unknown key, type)
        assert str(err).strip(), override
        return
    try:
        checked_job_config(cfg, args)
    except ConfigError as err:
        assert "\n" not in str(err), (override, str(err))
        leaf = key.split(".")[-1].rstrip("x")
        assert leaf in str(err) or key.split(".")[0] in str(err), (override, str(err))
        return
    run_dir = tmp_path_factory.mktemp("run")
    try:
        train_from_config(_shrunk(cfg), run_dir)
    except ConfigError as err:  # data-dependent: still one line
        assert "\n" not in str(err), (override, str(err))
        return
    assert read_metrics(run_dir)["status"] in ("completed", "early_stopped", "diverged")


# ---------------------------------------------------------------------------
# Checkpoint faults: killed at every write, resumed, equal to an uninterrupted run


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def _fit(run_dir: Path, resume: bool = False):
    from mlpkit import MLP, EarlyStopping, Trainer, load_dataset
    from mlpkit.training.checkpoint import ModelCheckpoint

    torch.manual_seed(0)
    data = load_dataset("moons", n_samples=80, seed=0)
    model = MLP(data.in_dim, [4], data.out_dim)
    trainer = Trainer(optimizer="adam", lr=0.1, max_epochs=12, batch_size=16, run_dir=run_dir, handle_signals=False,
                      callbacks=[EarlyStopping(patience=2), ModelCheckpoint(every_s=0)], device="cpu")
    last = run_dir / "checkpoints" / "last.pt"
    return trainer.fit(model, data, resume_from=last if resume and last.is_file() else None)


def _same(a, b) -> None:
    history = {k: v for k, v in a.history.items() if k != "epoch_seconds"}
    assert history == {k: v for k, v in b.history.items() if k != "epoch_seconds"}
    assert (a.status, a.epochs_run, a.best_epoch, a.test) == (b.status, b.epochs_run, b.best_epoch, b.test)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    import mlpkit.training.checkpoint as checkpoint_module

    calls = []
    save = checkpoint_module.save_checkpoint
    checkpoint_module.save_checkpoint = lambda path, state: (calls.append(Path(path).name), save(path, state))
    try:
        result = _fit(tmp_path_factory.mktemp("reference"))
    finally:
        checkpoint_module.save_checkpoint = save
    assert result.status == "early_stopped"
    return result, len(calls)


@pytest.mark.parametrize("when", ["before", "partial", "after"])
def test_killed_at_every_checkpoint_write_resumes_to_the_same_result(tmp_path, monkeypatch, reference, when):
    import mlpkit.training.checkpoint as checkpoint_module

    expected, n_writes = reference
    save = checkpoint_module.save_checkpoint
    for k in range(n_writes):
        run_dir = tmp_path / f"kill{k}"
        count = [0]

        def dying_save(path, state):
            count[0] += 1
            if count[0] <= k:
                return save(path, state)
            path = Path(path)
            if when == "partial":  # a save cut short: a temp file beside the old one
                path.parent.mkdir(parents=True, exist_ok=True)
                (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"\x80half")
            if when == "after":
                save(path, state)
            raise Killed

        monkeypatch.setattr(checkpoint_module, "save_checkpoint", dying_save)
        with pytest.raises(Killed):
            _fit(run_dir)
        monkeypatch.setattr(checkpoint_module, "save_checkpoint", save)
        _same(_fit(run_dir, resume=True), expected)
        ckpt = run_dir / "checkpoints"
        assert not list(ckpt.glob(".*.tmp")), "a stale temp file was left"
        last = torch.load(ckpt / "last.pt", weights_only=True)
        best = torch.load(ckpt / "best.pt", weights_only=True)
        assert best["epoch"] == last["best"]["epoch"] == expected.best_epoch


def test_damaged_best_pt_does_not_block_resume_and_is_rewritten(tmp_path, monkeypatch, reference):
    import mlpkit.training.checkpoint as checkpoint_module

    expected, _ = reference
    save, count = checkpoint_module.save_checkpoint, [0]

    def dying_save(path, state):
        count[0] += 1
        save(path, state)
        if count[0] == 6:
            raise Killed

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", dying_save)
    with pytest.raises(Killed):
        _fit(tmp_path)
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save)
    best = tmp_path / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    _same(_fit(tmp_path, resume=True), expected)
    assert torch.load(best, weights_only=True)["epoch"] == expected.best_epoch


def test_full_disk_keeps_the_last_good_checkpoint_and_records_the_status(tmp_path, monkeypatch, reference):
    import mlpkit.training.checkpoint as checkpoint_module

    expected, _ = reference
    real_save, count = torch.save, [0]

    def full_disk(obj, fh):
        count[0] += 1
        if count[0] > 4:
            raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed; unexpected pos 4096 vs 3990")
        real_save(obj, fh)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    result = _fit(tmp_path)
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert result.status == "interrupted" and "disk is full" in result.message, result.message
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] >= 1
    _same(_fit(tmp_path, resume=True), expected)


# ---------------------------------------------------------------------------
# Resume: only mlpkit's overrides are taken from a run directory


def _fake_run(tmp_path: Path, text: str) -> Path:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (run / ".hydra" / "overrides.yaml").write_text(text)
    return run


@pytest.mark.parametrize("line", [
    "+hydra.callbacks.evil._target_=shutil.copyfile", "hydra.callbacks.evil._target_=builtins.open",
    "+foo._target_=os.system", "~trainer", "optimizer.lr=${oc.env:HOME}", "data=${oc.env:HOME}",
    "++trainer.max_epochs=3", "data=nope", "+data.noize=1", "data@foo=moons", "optimizer.lr=1,2",
])
def test_resume_refuses_a_foreign_override_naming_its_line(tmp_path, line):
    run = _fake_run(tmp_path, f"- data=moons\n- '{line}'\n")
    with pytest.raises(ConfigError, match="line 2") as err:
        saved_overrides(run)
    assert "mlpkit override" in str(err.value)


@pytest.mark.parametrize("text", ["- [unclosed\n", "just text\n", "- 1\n- {a: b}\n", "\x00\x01"])
def test_resume_refuses_damaged_overrides_in_one_line(tmp_path, text):
    run = _fake_run(tmp_path, text)
    with pytest.raises(ConfigError, match="damaged"):
        saved_overrides(run)


def test_resume_keeps_plain_mlpkit_overrides(tmp_path):
    lines = ["data=moons", "model.hidden=[16,8]", "optimizer.betas=[0.8,0.9]", "experiment=xor",
             "trainer.progress=false", "data.path='a,b=c.csv'"]
    import yaml

    run = _fake_run(tmp_path, yaml.safe_dump([*lines, "resume=somewhere"]))
    assert saved_overrides(run) == lines


# ---------------------------------------------------------------------------
# What only a process shows

def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_exit_2(run) -> None:
    info = run.describe()
    assert run.returncode == 2, info
    assert "Traceback" not in run.output, info
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlpkit: error: "), info


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run directory as `python train.py *TINY` leaves it, made in-process (seconds cheaper)."""
    from conftest import finished_run as make

    return make(tmp_path_factory.mktemp("finished") / "run", TINY)


def test_resume_refuses_settings_that_do_not_fit(finished_run):
    from mlpkit.app.cli import check_resume

    for override, named in (("model.hidden=[16]", "model.hidden=[16]"),
                            ("trainer.manual_backprop=false", "trainer.manual_backprop=False"),
                            ("optimizer=sgd", "optimizer.name=sgd"), ("seed=1", "seed=1")):
        args = rewrite_resume_argv(["train.py", f"resume={finished_run}", override])[1:]
        with pytest.raises(ConfigError, match="does not fit") as err:
            check_resume(checked_job_config(compose_config(args), args), finished_run)
        assert named in str(err.value), str(err.value)
    args = rewrite_resume_argv(["train.py", f"resume={finished_run}", "trainer.max_epochs=2"])[1:]
    with pytest.raises(SystemExit) as exit_:  # the run finished: nothing to do
        check_resume(checked_job_config(compose_config(args), args), finished_run)
    assert exit_.value.code == 0


@pytest.mark.slow
def test_resume_attacks_and_refusals_leave_the_run_directory_as_it_was(tmp_path, finished_run):
    import shutil

    run_dir, evil = tmp_path / "run", tmp_path / "evil"
    shutil.copytree(finished_run, run_dir)
    shutil.copytree(finished_run, evil)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    payload = ["+hydra.callbacks.evil._target_=shutil.copyfile", f"+hydra.callbacks.evil.src={victim}",
               f"+hydra.callbacks.evil.dst={tmp_path / 'PWNED'}"]
    original = (evil / ".hydra" / "overrides.yaml").read_text()
    (evil / ".hydra" / "overrides.yaml").write_text(original + "".join(f"- '{line}'\n" for line in payload))
    # a last.pt whose weights do not fit the model: found only once the run started, and undone
    odd = tmp_path / "odd"
    shutil.copytree(finished_run, odd)
    state = torch.load(odd / "checkpoints" / "last.pt", weights_only=True)
    state["model"] = {k: torch.zeros(3, 3) for k in state["model"]}
    torch.save(state, odd / "checkpoints" / "last.pt")
    (odd / "metrics.json").write_text('{"status": "interrupted"}')
    before = {d: _digest(d) for d in (run_dir, evil, odd)}
    # never two on one directory (a run directory is locked by the run that resumes it): the foreign
    # overrides as a process (no code of theirs runs in it), meanwhile the others one after another here
    runs = train_mixed([([f"resume={evil}"], tmp_path),
                        ([f"resume={run_dir}", "model.hidden=[16]"], tmp_path),  # does not fit
                        ([f"resume={run_dir}"], tmp_path),  # finished: exit 0, nothing changes
                        ([f"resume={odd}"], tmp_path)], as_process=[0])
    _one_line_exit_2(runs[0])
    assert f"line {original.count(chr(10)) + 1}" in runs[0].stderr and "not an mlpkit override" in runs[0].stderr
    assert victim.read_text() == "keep me" and not (tmp_path / "PWNED").exists()
    _one_line_exit_2(runs[1])
    assert "model.hidden=[16]" in runs[1].stderr
    assert runs[2].returncode == 0 and "already finished" in runs[2].stdout, runs[2].describe()
    _one_line_exit_2(runs[3])
    assert "does not match this run's model" in runs[3].stderr
    assert {d: _digest(d) for d in (run_dir, evil, odd)} == before
    assert not (tmp_path / "outputs").exists()


def _refused_cases(root: Path) -> dict:
    """name -> (args, needle): `python train.py` refused at each stage (data, run directory, sweep), and
    (needle None) a sweep whose one job the data refuse. Writes the files they read into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    bad_csv = root / "bad.csv"
    bad_csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},yes\n" for i in range(30)))  # one class
    a_file = root / "a_file"
    a_file.write_text("")
    regression_csv = root / "numbers.csv"
    regression_csv.write_text("a,y\n" + "".join(f"{i},{(i * 7919) % 101 / 7}\n" for i in range(40)))
    return {
        "data": (["data=csv", f"data.path={bad_csv}", "trainer.progress=false"], "only one class"),  # found while loading
        "run-dir": ([*TINY, f"hydra.run.dir={a_file}/run"], "hydra.run.dir"),
        "run-dir-a-file": ([*TINY, f"hydra.run.dir={a_file}"], "not a directory"),
        "sweep": (["-m", "data=moons,sine,circles", "early_stopping.monitor=val_accuracy", "trainer.max_epochs=3"],
                  "data=sine"),
        # a conflict only the data show fails its sweep job alone: logged, and the next job runs
        "sweep-on": (["-m", "data=csv", f"data.path={regression_csv},{good_csv(root / 'classes.csv')}",
                      "early_stopping.monitor=val_accuracy", "model.hidden=[4]", "trainer.max_epochs=1",
                      "trainer.progress=false"], None),
    }


@pytest.mark.slow
def test_refused_runs_leave_nothing_and_print_one_line(tmp_path):
    root = tmp_path / "hardening"
    cases = _refused_cases(root)
    # the run-directory refusal as a process (test_errors runs the other stages as processes), the rest here
    jobs = [(args, root / name) for name, (args, _) in cases.items()]
    runs = dict(zip(cases, train_mixed(jobs, as_process=[list(cases).index("run-dir")])))
    for name, (args, needle) in cases.items():
        run = runs[name]
        if needle is None:
            continue
        _one_line_exit_2(run)
        assert needle in run.stderr, run.describe()
        left = list((root / name).rglob("*"))
        assert left == [], f"{name}: left {left}"
    on = runs["sweep-on"]
    assert on.returncode == 0 and "Traceback" not in on.output, on.describe()
    assert "val_accuracy needs a classification data set" in on.stderr, on.describe()
    [metrics] = list((root / "sweep-on").rglob("metrics.json"))
    assert "classes.csv" in metrics.parent.name and read_metrics(metrics.parent)["status"] == "completed"


@pytest.mark.slow
def test_signals_at_start_up_and_while_training(tmp_path):
    """SIGINT/SIGTERM once the run directory exists but before training: one line, exit 130, nothing left
    (or, if training won the race, a normal record); SIGTERM while training: `interrupted`, exit 130."""
    long_run = ["data=classification", "data.n_samples=400", "data.n_features=4", "model.hidden=[8]",
                "trainer.max_epochs=1000", "trainer.batch_size=1", "trainer.progress=false"]
    procs = {"SIGINT": popen_train(TINY, tmp_path / "SIGINT"), "SIGTERM": popen_train(TINY, tmp_path / "SIGTERM"),
             "training": popen_train(long_run, tmp_path / "training")}
    ready = {"SIGINT": "outputs", "SIGTERM": "outputs", "training": "outputs/runs/*/*/checkpoints/last.pt"}
    for name, proc in procs.items():
        deadline = time.time() + 90
        while not list((tmp_path / name).glob(ready[name])) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT if name == "SIGINT" else signal.SIGTERM)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        assert "Traceback" not in out + err, err
        metrics = list((tmp_path / name).rglob("metrics.json"))
        if name == "training":
            assert proc.returncode == 130 and read_metrics(metrics[0].parent)["status"] == "interrupted", err
        elif proc.returncode == 130 and not metrics:  # before training began: nothing left
            assert list((tmp_path / name).rglob("*")) == [], err
        else:
            assert proc.returncode in (0, 130), err
            assert read_metrics(metrics[0].parent)["status"] in ("interrupted", "completed")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 half a zip", b"\x80\x04K\x01."])
def test_unreadable_checkpoint_never_suggests_the_unsafe_load(tmp_path, content):
    from mlpkit.training.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "not a readable mlpkit checkpoint" in message or "not an mlpkit checkpoint" in message
    assert "weights_only" not in message and "\n" not in message


def test_signal_during_the_test_pass_records_interrupted(tmp_path, monkeypatch):
    from mlpkit.app.cli import train_from_config
    from mlpkit.training.trainer import Trainer

    test_metrics = Trainer.test_metrics

    def signalled(self, model, data):  # SIGTERM arrives while the test split is evaluated
        self.stop_signal = signal.SIGTERM
        return test_metrics(self, model, data)

    monkeypatch.setattr(Trainer, "test_metrics", signalled)
    with pytest.raises(SystemExit) as exit_:
        train_from_config(compose_config(TINY), tmp_path)
    assert exit_.value.code == 130
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["message"]


def test_unwritable_outputs_is_one_line(tmp_path, monkeypatch):
    from mlpkit.app.cli import unique_dir

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # a read-only outputs/ (the tests may run as root)
    with pytest.raises(ConfigError, match="cannot create the run directory .*Permission denied"):
        unique_dir(str(tmp_path / "outputs" / "runs"), "12-00-00_x")
