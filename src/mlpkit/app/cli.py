"""From a composed Hydra config to a finished run: the body of `python train.py`."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

from hydra.experimental.callback import Callback as HydraCallback

from mlpkit import startup
from mlpkit.app import build
from mlpkit.app.config import MONITOR_MODE, validate
from mlpkit.errors import ConfigError, RunError, exit_with
from mlpkit.registry import not_known
from mlpkit.status import RunStatus

log = logging.getLogger("mlpkit")

NAME_LIMIT = 200  # bytes of a run directory name; file systems allow 255


def run_name(prefix: str, overrides: str) -> str:
    """`<prefix>_<overrides>` made safe as one directory name: no `/`, at most NAME_LIMIT bytes."""
    name = f"{prefix}_{overrides}" if overrides else prefix
    name = name.replace("/", "|").replace("\\", "|").replace("|", "-")
    if len(name.encode()) > NAME_LIMIT:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        head = name.encode()[:NAME_LIMIT - 12].decode(errors="ignore")
        name = f"{head}~{digest}"
    return name


_RESERVED: dict = {}
CREATED: List[Path] = []  # run directories this process made: removed again if the run never starts


def make_run_dir(path: Path, exist_ok: bool = False) -> None:
    """mkdir -p `path` and record it in CREATED as one step: SIGINT/SIGTERM wait until both are done, so an
    interrupt at start-up never leaves a directory that GUARD does not know it made."""
    block = getattr(signal, "pthread_sigmask", None)
    held = block(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if block else None
    try:
        existed = path.exists()
        path.mkdir(parents=True, exist_ok=exist_ok)
        if not existed:  # absolute: hydra.job.chdir=true changes the working directory before a refusal
            CREATED.append(path.absolute())
    finally:
        if block:
            block(signal.SIG_SETMASK, held)


def unique_dir(parent: str, name: str) -> str:
    """`parent/name`, created now; `parent/name_2`, `_3`, ... when another run took it first.

    mkdir is atomic, so two runs started in the same second never share a directory. The
    answer is remembered, so every later resolution in this process gives the same path
    (jobs in other processes receive it in the config's resolver cache)."""
    key = (str(parent), str(name))
    if key not in _RESERVED:
        path, n = Path(parent) / name, 1
        while True:
            try:
                make_run_dir(path)
                break
            except FileExistsError:
                n += 1
                path = Path(parent) / f"{name}_{n}"
            except OSError as err:
                raise ConfigError(f"cannot create the run directory {path}: {err.strerror or err}; "
                                  "run from a writable directory or set hydra.run.dir") from None
        _RESERVED[key] = str(path)
    return _RESERVED[key]


HELD: List[int] = []  # descriptors of the run (or sweep) directories this process owns: flock'ed until it exits


def claim_dir(path: Path, key: str, resume: bool = False) -> None:
    """Make `path` this process's run (or sweep) directory before Hydra writes into it: created when new,
    locked (flock, held until the process exits; released by the kernel even after a kill) and, unless
    `resume`, empty. ConfigError naming `key=path` otherwise: a finished run or a folder of other files is
    never written into, and a directory another run holds is left untouched."""
    import fcntl

    path = Path(path)
    try:
        if not path.exists() and not path.is_symlink():
            make_run_dir(path)
        if not path.is_dir():
            raise NotADirectoryError(20, "it is a file, not a directory")
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot create or write the run directory "
                          f"({err.strerror or err})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{key}={path}: the directory is in use by another run that is training in it; "
                          "wait for that run to end or choose another directory") from None
    except OSError:  # a file system without locks (some network mounts): the emptiness check still holds
        log.debug("no lock on %s: the file system does not support flock", path)
    HELD.append(fd)
    if resume:
        return
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        if "metrics.json" in entries or ".hydra" in entries or "multirun.yaml" in entries:
            what = "a run or sweep that already ran there"
            hint = " (resume=<run_dir> continues an interrupted run)" if key == "hydra.run.dir" else ""
        else:
            what = f"{len(entries)} file{'s' if len(entries) > 1 else ''} of its own, e.g. {entries[0]!r}"
            hint = ""
        raise ConfigError(f"{key}={path}: the directory is not empty (it holds {what}); a run directory must be "
                          f"new or empty, so nothing in it is overwritten: choose another one{hint}")


def release_dirs() -> None:
    """Give up the directories claim_dir locked (in-process callers; a process releases them at exit)."""
    while HELD:
        os.close(HELD.pop())


def register_resolvers() -> None:
    """The resolvers configs/train.yaml names its output directories with."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("mlpkit_name"):
        OmegaConf.register_new_resolver("mlpkit_name", lambda prefix, overrides="": run_name(str(prefix),
                                                                                          str(overrides or "")))
    if not OmegaConf.has_resolver("mlpkit_unique"):
        OmegaConf.register_new_resolver("mlpkit_unique", unique_dir, use_cache=True)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_command_line(args: List[str]) -> None:
    """ConfigError for an override Hydra's grammar cannot read (e.g. a non-ASCII option name), with the
    options of its group when it chooses one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from mlpkit.app.config import check_overrides, config_groups

    parser = OverridesParser.create()
    check_flag_order(args)
    overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    multirun = "-m" in args or "--multirun" in args
    for arg in overrides:
        try:
            [o] = parser.parse_overrides([arg])
            check_sweep_value(o, arg, multirun)
        except HydraException as err:
            key, _, value = arg.partition("=")
            key = key.lstrip("+~")
            groups = config_groups()
            if key in groups:
                raise ConfigError(not_known(key, value, groups[key])) from None
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            example = f'{key}="{value}"' if not {'"', "'"} & set(value) else "key=\"a b\""
            raise ConfigError(f"cannot read the override {arg!r} ({reason}); a value with spaces or other "
                              f"characters needs quotes for Hydra, inside quotes for the shell: '{example}'") from None
    check_overrides(overrides)
    check_hydra_choices(overrides)


# Hydra's flags that take a value (`--cfg job`): the value is not an override
_VALUED_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
                 "-cd", "--experimental-rerun", "--info", "-i")


def check_flag_order(args: List[str]) -> None:
    """ConfigError when a flag (-m, --cfg, ...) stands between overrides: Hydra's argparse then prints its
    whole usage ("unrecognized arguments") without saying what is wrong. A flag after all overrides works."""
    seen, flag, skip = None, None, False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith("-") and arg != "-":
            if seen is not None and flag is None:
                flag = " ".join(args[i:i + 2]) if arg in _VALUED_FLAGS[:-2] and i + 1 < len(args) else arg
            skip = arg in _VALUED_FLAGS[:-2]
        elif "=" in arg or arg.startswith("~"):
            if flag is not None:
                name = flag.split()[0]
                raise ConfigError(f"{name} comes after the override {seen!r}; put {name} (and Hydra's other "
                                  f"options) before the overrides, e.g. python train.py {flag} {seen} ...")
            seen = seen or arg


def check_sweep_value(o: Any, arg: str, multirun: bool) -> None:
    """ConfigError for a sweep (a,b / range() / ...) where it cannot go: without -m (Hydra's 'Ambiguous
    value'), a list-typed key swept over numbers (`model.hidden=64,32`), a sweep nested in a list of choices."""
    from hydra.core.override_parser.types import ChoiceSweep, Sweep

    from mlpkit.app.config import schema_keys

    if not o.is_sweep_override():
        return
    key, value = o.key_or_group, o.value()
    listed = [v for v in value.list] if isinstance(value, ChoiceSweep) else []
    kind = schema_keys().get(key)
    is_list = kind is not None and "List" in str(kind)
    if any(isinstance(v, Sweep) for v in listed):
        raise ConfigError(f"cannot read the sweep {arg!r}: a list of choices cannot hold range(), interval() or "
                          f"another sweep; list the values (e.g. {key}=0,1,2) or use one range(...)")
    if is_list and listed and not all(isinstance(v, list) for v in listed):
        values = ",".join(str(v) for v in listed)
        raise ConfigError(f"{arg}: {key} is a list; write it in brackets: {key}=[{values}] (to sweep over "
                          f"lists: -m '{key}=[{values}],[{listed[0]}]')")
    raw = arg.split("=", 1)[1]
    if isinstance(value, ChoiceSweep) and "," in raw and os.path.exists(os.path.expanduser(raw)):
        raise ConfigError(f"{arg}: Hydra reads a comma as a list of values (a sweep), but {raw} is one file; "
                          f"quote the value for Hydra, inside quotes for the shell: '{key}=\"{raw}\"'")
    if not multirun and not key.startswith("hydra"):
        raise ConfigError(f"{arg} is a sweep (several values); add -m before the overrides to run one job per "
                          f"value, e.g. python train.py -m {arg}" + (f", or write a list in brackets: {key}=[...]"
                                                                     if is_list else ""))


def check_hydra_choices(overrides: List[str]) -> None:
    """ConfigError for hydra/launcher= or hydra/sweeper= naming no installed plugin config, and for
    hydra.sweeper.* settings the chosen sweeper does not have (a grid sweep has none of Optuna's)."""
    chosen = {}
    for arg in overrides:
        key, _, value = arg.lstrip("+").partition("=")
        chosen[key] = value
    for group in ("hydra/launcher", "hydra/sweeper"):
        if group in chosen and "," not in chosen[group]:
            options = hydra_group_options(group)
            if options and chosen[group] not in options:
                raise ConfigError(not_known(group, chosen[group], options))
    optuna = chosen.get("hparams_search") == "optuna" or chosen.get("hydra/sweeper") == "optuna"
    for key, value in chosen.items():
        basic = key.split(".")[2] in ("params", "max_batch_size") if key.count(".") >= 2 else True
        if key.startswith("hydra.sweeper.") and not optuna and not basic and "experiment" not in chosen:
            raise ConfigError(f"{key} is a setting of the Optuna sweeper; add hparams_search=optuna (the grid "
                              "sweep of -m takes only hydra.sweeper.params and hydra.sweeper.max_batch_size)")
        if key == "hydra.sweeper.n_trials" and "," not in value:
            try:
                ok = int(value) >= 1
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(f"hydra.sweeper.n_trials={value} is out of range; allowed: an integer >= 1")


def hydra_group_options(group: str) -> List[str]:
    """The options of a Hydra group such as hydra/launcher (its plugins' configs and configs/hydra/...)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    from mlpkit.app import config
    try:
        loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config.CONFIG_DIR)))
        return sorted(loader.get_group_options(group))
    except Exception:  # Hydra's internals moved: let Hydra itself answer
        return []


def _plain(value: Any) -> bool:
    """A value that is data: numbers, text without interpolation, and lists or dicts of them."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and "${" not in value)


def saved_overrides(run_dir: Path) -> List[str]:
    """The mlpkit overrides of `<run_dir>/.hydra/overrides.yaml`: config group choices with a known
    option and schema keys with plain values. Anything else (hydra.*, `+`/`~` forms, callbacks,
    interpolations) is refused with a ConfigError naming the line: resuming runs none of it."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from mlpkit.app.config import config_groups, schema_keys

    saved = run_dir / ".hydra" / "overrides.yaml"
    where = f"resume={run_dir}: {saved.relative_to(run_dir)}"
    try:
        lines = yaml.safe_load(saved.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{where} is damaged ({type(err).__name__}); it must be a list of overrides") from None
    if lines is None:
        lines = []
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ConfigError(f"{where} is damaged: it must be a list of overrides (key=value lines)")
    groups, keys, parser = config_groups(), schema_keys(), OverridesParser.create()
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            [o] = parser.parse_overrides([line])
            ok = (not (o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override())
                  and o.package is None and _plain(o.value()))
        except (HydraException, ValueError):
            ok = False
        if ok and o.key_or_group == "resume":
            continue
        if ok and o.key_or_group in groups:
            ok = o.value() in groups[o.key_or_group]
        elif ok:
            ok = o.key_or_group in keys
        if not ok:
            raise ConfigError(f"{where} line {number} {line[:200]!r} is not an mlpkit override (a config group "
                              "option or a schema key with a plain value); refusing to resume from it")
        kept.append(line)
    return kept


def rewrite_resume_argv(argv: List[str]) -> List[str]:
    """`resume=<run_dir>` -> that run's own mlpkit overrides + `hydra.run.dir=<run_dir>`, quoted so that
    `=`, `,` and brackets in the directory name pass Hydra's override parser."""
    found = [a for a in argv[1:] if a.startswith(("resume=", "+resume=", "++resume="))]
    if not found:
        return argv
    run_dir = found[-1].split("=", 1)[1].strip()
    if len(run_dir) >= 2 and run_dir[0] == run_dir[-1] and run_dir[0] in "'\"":
        run_dir = run_dir[1:-1]
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"resume={run_dir}: no such run directory")
    if not (path / ".hydra" / "overrides.yaml").is_file():
        from mlpkit.files import runs_inside

        inside, first = runs_inside(path, ".hydra/overrides.yaml")
        if inside:  # a sweep's folder: each job resumes on its own
            raise ConfigError(f"resume={run_dir} {inside}: resume each of them, e.g. python train.py resume={first}")
        raise ConfigError(f"resume={run_dir}: not an mlpkit run directory (no .hydra/overrides.yaml)")
    if not (path / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"resume={run_dir}: the run has no checkpoints/last.pt to continue from")
    rest = [a for a in argv[1:] if a not in found]
    if "-m" in rest or "--multirun" in rest:
        raise ConfigError("resume=<run_dir> continues one run; it cannot be combined with -m")
    return [argv[0], *saved_overrides(path), *rest, f"hydra.run.dir={_quote(str(path))}",
            f"resume={_quote(str(path))}"]


# What a resumed run may change; every other setting must stay as the run was trained.
RESUME_MAY_CHANGE = ("resume", "trainer.max_epochs", "trainer.progress", "trainer.device", "trainer.num_threads",
                     "trainer.deterministic", "trainer.log_every_n_steps", "trainer.histogram_every_n_epochs",
                     "trainer.boundary_every_n_epochs", "early_stopping.patience",
                     "trainer.strategy",  # the number of processes too: last.pt holds nothing per rank
                     "trainer.refit", "trainer.refit_models")  # trained after the run, from nothing last.pt holds


def _flat(node: Any, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def check_resume(cfg: Any, run_dir: Path) -> None:
    """Before Hydra writes into `run_dir`: every setting fits the saved run, last.pt is readable, and the
    run has not finished (then say so and exit 0: nothing is trained or changed)."""
    import json

    import yaml
    from omegaconf import OmegaConf

    from mlpkit.training.checkpoint import load_checkpoint

    try:
        old = _flat(yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"resume={run_dir}: .hydra/config.yaml is missing or damaged ({type(err).__name__})") from None
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    for flat in (old, new):  # mode=auto is the monitor's own mode (older runs wrote it out)
        if flat.get("early_stopping.mode") == "auto" and flat.get("early_stopping.monitor") in MONITOR_MODE:
            flat["early_stopping.mode"] = MONITOR_MODE[flat["early_stopping.monitor"]]
    for key, value in new.items():
        if key in old and key not in RESUME_MAY_CHANGE and old[key] != value:
            raise ConfigError(f"resume={run_dir}: {key}={value} does not fit the run, which was trained with "
                              f"{key}={old[key]}; a resumed run keeps its settings except "
                              f"{', '.join(RESUME_MAY_CHANGE[1:])}")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    check_data_source(cfg, run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    status = metrics.get("status")
    status = RunStatus(status) if status in RunStatus.endings() else None
    done = int(state.get("epoch", 0))
    if not (status and status.ended) and done > cfg.trainer.max_epochs:
        raise ConfigError(f"resume={run_dir}: trainer.max_epochs={cfg.trainer.max_epochs} is below the {done} "
                          f"epochs the run has trained; allowed: trainer.max_epochs >= {done}")
    budget = metrics.get("max_steps_epochs") if cfg.trainer.max_steps is not None else None
    limit = cfg.trainer.max_epochs if not isinstance(budget, int) else min(cfg.trainer.max_epochs, budget)
    more = status == RunStatus.COMPLETED and done < limit
    if status and status.ended and not more:
        hint = ""
        if status == RunStatus.COMPLETED:
            hint = (f" (trainer.max_steps={cfg.trainer.max_steps} ends it after {budget} epochs)"
                    if limit == budget and budget <= done else " (raise trainer.max_epochs to train it further)")
        print(f"mlpkit: resume={run_dir}: the run already finished (status {status} after "
              f"{metrics.get('epochs_run')} epochs); nothing to do, nothing changed{hint}", flush=True)
        raise SystemExit(0)


DATA_SOURCE = "data_source.json"  # what a data=csv run trained on: its file's path, size, mtime and sha256


def file_fingerprint(path: Path) -> dict:
    """Size, modification time and sha256 (streamed) of a data file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    st = os.stat(path)
    return {"path": str(Path(path).absolute()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": digest.hexdigest()}


def record_data_source(cfg: Any, run_dir: Path) -> Optional[dict]:
    """The fingerprint of a data=csv run's file, to be written into the run directory (None otherwise)."""
    if cfg.data.name != "csv" or not cfg.data.get("path"):
        return None
    try:
        return file_fingerprint(Path(str(cfg.data.path)))
    except OSError as err:
        raise ConfigError(f"data.path={cfg.data.path}: cannot read it ({err.strerror or err})") from None


def check_data_source(cfg: Any, run_dir: Path) -> None:
    """ConfigError when the file a data=csv run trained on changed since (a resume would go on with other
    data), naming the file and what changed. Runs without a record (older ones) are not checked."""
    import json

    saved = run_dir / DATA_SOURCE
    if cfg.data.name != "csv" or not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
        size, mtime, sha = int(old["size"]), int(old["mtime_ns"]), str(old["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"resume={run_dir}: {DATA_SOURCE} is damaged; it must record the data file's size, "
                          "mtime_ns and sha256") from None
    path = Path(str(cfg.data.path))
    where = f"resume={run_dir}: data.path={path}"
    try:
        st = os.stat(path)
    except OSError as err:
        raise ConfigError(f"{where}: cannot read the file the run trained on ({err.strerror or err})") from None
    changes = []
    if st.st_size != size:
        changes.append(f"its size went from {size} to {st.st_size} bytes")
    elif file_fingerprint(path)["sha256"] != sha:
        changes.append("its sha256 differs: same size, other content")
    if changes:
        if st.st_mtime_ns != mtime:
            changes.append(f"it was modified at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}")
        raise ConfigError(f"{where} changed since the run trained on it ({'; '.join(changes)}); a resume must "
                          "continue on the same data: restore the file or start a new run")


class RunDirGuard:
    """Leaves no trace of a run that never started: a run directory this process created is removed;
    a resumed one gets back its files as they were (Hydra rewrites .hydra/*.yaml and appends to the log)."""

    def __init__(self) -> None:
        self.began = False  # training began: from then on the directory is the run's
        self.saved: Optional[tuple] = None

    def remember(self, run_dir: Path) -> None:
        files = {p: p.read_bytes() if p.parent.name == ".hydra" else p.stat().st_size
                 for p in run_dir.rglob("*") if p.is_file()}
        self.saved = (run_dir, files)

    def discard(self, refused: bool = False) -> None:
        """Undo the run's traces; `refused`: a ConfigError, which is raised only before the first step
        (a resume that does not fit its checkpoint included), so even after `began`."""
        import shutil

        if self.began and not refused:
            return
        if self.saved is not None:
            run_dir, files = self.saved
            for p in [p for p in run_dir.rglob("*") if p.is_file() and p not in files]:
                p.unlink(missing_ok=True)
            for p, old in files.items():
                if isinstance(old, bytes):
                    p.write_bytes(old)
                elif p.is_file() and p.stat().st_size > old:
                    os.truncate(p, old)
            return
        _close_file_logs()
        for path in CREATED:
            if any(p.is_file() and not _start_up_file(p, path) for p in path.rglob("*")):
                continue  # e.g. a sweep directory whose earlier jobs ran: theirs to keep
            shutil.rmtree(path, ignore_errors=True)
            for parent in list(path.parents)[:3]:  # <date>/, runs/, outputs/ when nothing else is there
                try:
                    parent.rmdir()
                except OSError:
                    break
        CREATED.clear()


GUARD = RunDirGuard()


def _start_up_file(path: Path, run_dir: Path) -> bool:
    """What a run writes before training: Hydra's .hydra/ and multirun.yaml, its log, an empty event file."""
    parts = path.relative_to(run_dir).parts
    return ".hydra" in parts or path.suffix == ".log" or path.name in ("multirun.yaml",) \
        or path.name.startswith("events.out.tfevents")


def quiet_file_logs() -> None:
    """A log file that cannot be written (a full disk) is said once, in one line, instead of logging's
    '--- Logging error ---' and a traceback for every line; the run goes on (a checkpoint that cannot be
    written then stops it as interrupted)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and not getattr(handler, "_mlpkit_quiet", False):
            def handle_error(record: logging.LogRecord, handler: logging.FileHandler = handler) -> None:
                if getattr(handler, "_mlpkit_failed", False):
                    return
                handler._mlpkit_failed = True  # type: ignore[attr-defined]
                err = sys.exc_info()[1]
                reason = "the disk is full" if getattr(err, "errno", None) == 28 else (
                    getattr(err, "strerror", None) or str(err) or type(err).__name__)
                print(f"mlpkit: warning: cannot write the log file {handler.baseFilename} ({reason}); the run goes "
                      "on and the file stays incomplete", file=sys.stderr, flush=True)

            handler.handleError = handle_error  # type: ignore[method-assign]
            handler._mlpkit_quiet = True  # type: ignore[attr-defined]


def _close_file_logs() -> None:
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logging.getLogger().removeHandler(handler)


TRAINER: List[Any] = []  # the Trainer once training began: a signal then asks it to stop


def on_signal(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM for the whole program. Before training begins they end it at once (the run
    directory goes); once it began the trainer finishes its step, saves and stops; a second one aborts."""
    trainer = TRAINER[-1] if TRAINER else None
    if trainer is None or trainer.stop_signal is not None:
        raise KeyboardInterrupt
    trainer.stop_signal = signum
    log.info("%s received: finishing this step, then saving and stopping (press Ctrl-C again to abort "
             "without saving)", signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """on_signal for SIGINT and SIGTERM (SIGTERM would otherwise end the program without a word)."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, on_signal)


def check_run(config: Any) -> None:
    """Hydra's on_run_start (before the run directory exists): every check that needs no data. A bad
    value ends the program with one line; nothing is created. In a job of several processes (ddp)
    rank 0 alone creates and claims the run directory and hands it to the others (follow_rank0)."""
    from omegaconf.errors import OmegaConfBaseException

    from mlpkit.training.launch import detect

    launch = detect()
    try:
        job = checked_job_config(config, task_overrides(config))
        launch = job_launch(job, launch)
        if launch.rank > 0:
            return follow_rank0(config, launch)
        try:
            run_dir = config.hydra.run.dir  # our resolver creates it; an explicit one is created here
        except OmegaConfBaseException as err:  # the resolver's ConfigError, wrapped
            raise resolver_error("hydra.run.dir", err) from None
        # locked first: a resume of a directory another run trains in must not even read it back
        claim_dir(Path(run_dir), "hydra.run.dir", resume=bool(job.resume))
        if job.resume:
            GUARD.remember(Path(job.resume))
            check_resume(job, Path(job.resume))
        tell_ranks(launch, {"run_dir": str(run_dir)})
    except ConfigError as err:
        GUARD.discard()
        if launch.rank > 0:  # rank 0 says it, once for the job
            wait_for_rank0()
            raise SystemExit(2)
        tell_ranks(launch, {"exit": 2})
        exit_with(err)
    except SystemExit as done:  # a resume of a finished run: nothing to do on any rank
        tell_ranks(launch, {"exit": done.code})
        raise


def job_launch(job: Any, launch: Any) -> Any:
    """This process's place in a ddp job (`launch`), or one process (trainer.strategy=auto); ConfigError
    for a process that torchrun or srun started as one of several under trainer.strategy=auto (each
    would train a run of its own)."""
    from mlpkit.training.launch import Launch, init_process_group
    from mlpkit.training.strategy import check_sync_batch_norm
    from mlpkit.training.trainer import resolve_device

    if job.trainer.strategy != "ddp":
        if launch.distributed:
            raise ConfigError(f"this is rank {launch.rank} of {launch.world_size} processes started by "
                              f"{launch.launcher}, but trainer.strategy={job.trainer.strategy} trains each as a "
                              "run of its own; add trainer.strategy=ddp to train one run on all of them")
        return Launch()
    if launch.distributed:  # the process group before the run directory: rank 0 hands it on through it
        device = resolve_device(job.trainer.device).type
        check_sync_batch_norm(job.norm.name == "batch", device)
        init_process_group(launch, device)
    return launch


def tell_ranks(launch: Any, answer: dict) -> None:
    """Rank 0: the run directory (or the exit status) to the other ranks of a ddp job."""
    if not launch.distributed or launch.rank > 0:
        return
    import torch.distributed as dist

    from mlpkit.training.launch import broadcast_object

    if dist.is_initialized():  # (a refusal before the process group: every rank ends on its own)
        broadcast_object(answer, launch)


def wait_for_rank0(seconds: float = 30.0) -> None:
    """A rank > 0 that refused the config on its own (before the process group: rank 0 refuses the same and
    says it): torchrun ends every rank once one fails, so this one waits for that (at most `seconds`) and
    rank 0 has the time to say why; ending at once could have torchrun stop rank 0 before its line."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # rank 0's answer came through the process group
        return
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:  # torchrun's SIGTERM once rank 0 has ended (on_signal: nothing to stop yet)
        pass


def follow_rank0(config: Any, launch: Any) -> None:
    """A rank > 0: rank 0's run directory, and nothing written there by this process (no .hydra/, no
    log file; only warnings on the console). LHT issue 393: Hydra would otherwise make one per rank."""
    from omegaconf import open_dict, read_write

    from mlpkit.training.launch import broadcast_object

    answer = broadcast_object(None, launch)
    if "exit" in answer:
        raise SystemExit(answer["exit"])
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = answer["run_dir"]
        config.hydra.output_subdir = None
        logging_cfg = config.hydra.job_logging
        logging_cfg.handlers.pop("file", None)
        logging_cfg.root.handlers = [h for h in logging_cfg.root.handlers if h != "file"]
        logging_cfg.root.level = "WARNING"


def quiet_rank(strategy: Any) -> None:
    """A process that does not write the run (ddp rank > 0, also as a submitit task): no log file, warnings only."""
    if strategy.is_writer:
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    log.setLevel(logging.WARNING)


def task_overrides(config: Any) -> List[str]:
    """hydra.overrides.task as strings, resolved where they can be (an unset ${oc.env:X} stays as written:
    checked_job_config then names its key)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return list(config.hydra.overrides.task)
    except OmegaConfBaseException:
        return [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]


def _interpolation_error(key: str, err: Exception) -> ConfigError:
    """One line for a value whose ${...} cannot be resolved, naming its key (and the variable)."""
    import re

    text = str(err).splitlines()[0]
    env = re.search(r"Environment variable '([^']*)' not found", text)
    if env:
        name = env.group(1)
        return ConfigError(f"{key}: the environment variable {name} is not set (the value reads ${{oc.env:{name}}}); "
                           f"set it, or give a default: ${{oc.env:{name},<default>}}")
    return ConfigError(f"{key}: {text}")


def resolver_error(key: str, err: Exception) -> ConfigError:
    """A run or sweep directory that cannot be resolved: an unset variable named with its key, else the
    message of our resolver (e.g. cannot create the run directory)."""
    if "Environment variable" in str(err):
        return _interpolation_error(key, err)
    return ConfigError(str(err).splitlines()[0].split("interpolation: ", 1)[-1])


def checked_job_config(config: Any, overrides: List[str]) -> Any:
    """The job's config (less hydra.*), resolved and validated; ConfigError names the first bad value."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mlpkit.app.config import check_option_settings, check_overrides, check_recipe
    from mlpkit.training.trainer import resolve_device

    check_overrides(overrides)
    job = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]) if "hydra" in config else config
    try:
        OmegaConf.to_container(job, resolve=True)
    except OmegaConfBaseException as err:
        raise _interpolation_error(getattr(err, "full_key", None) or "a value", err) from None
    choices = config.hydra.runtime.get("choices", {}) if "hydra" in config else {}
    check_recipe(job, choices.get("recipe"))
    validate(job)
    check_option_settings(job, overrides)
    resolve_device(job.trainer.device)
    VALIDATED[:] = [OmegaConf.to_container(job, resolve=True)]
    return job


# The job config this process last validated (check_run, before the run directory): its run does not
# check it again (a data file is then checked twice, not three times: here and where it is read).
VALIDATED: List[Any] = []


# Overrides that select a Hydra plugin of the `sweeps` extra -> the plugin's module in hydra_plugins.
SWEEP_PLUGINS = {
    "hparams_search=optuna": ("hydra_optuna_sweeper", "sweeps"),
    "hydra/sweeper=optuna": ("hydra_optuna_sweeper", "sweeps"),
    "hydra/launcher=joblib": ("hydra_joblib_launcher", "sweeps"),
    "hydra/launcher=submitit_local": ("hydra_submitit_launcher", "sweeps"),
    "hydra/launcher=submitit_slurm": ("hydra_submitit_launcher", "sweeps"),
    "hydra/launcher=ray": ("hydra_ray_launcher", "ray"),
    "hydra/launcher=ray_cluster": ("hydra_ray_launcher", "ray"),
}


def hydra_error_line(err: BaseException) -> str:
    """Hydra's or OmegaConf's message in one line: its lines up to the config search path, joined."""
    lines = []
    for line in str(err).splitlines():
        if line.strip().startswith(("Config search path", "Set the environment variable HYDRA_FULL_ERROR")):
            break
        if line.strip():
            lines.append(line.strip().rstrip(":") + (":" if line.strip().endswith(":") else ""))
    text = " ".join(lines) or type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def install_hydra_error_line() -> None:
    """A config or override that Hydra itself refuses (while composing, sweeping or launching) ends with
    one `mlpkit: error:` line and exit status 2, not Hydra's multi-line report (exit 1) or a traceback;
    HYDRA_FULL_ERROR=1 keeps Hydra's own report. Errors of the run itself are handled in run()."""
    import hydra._internal.utils as hydra_utils
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    original = hydra_utils.run_and_report
    if getattr(original, "_mlpkit", False):
        return

    def run_and_report(func: Any) -> Any:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return original(func)
        try:
            return func()
        except (HydraException, OmegaConfBaseException) as err:
            GUARD.discard()
            exit_with(ConfigError(hydra_error_line(err)))

    run_and_report._mlpkit = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report


def mode_is_unset(argv: List[str], overrides: List[str]) -> bool:
    """True when nothing can set `hydra.mode` (a config may make -m the default): no Hydra flag but -m, no
    override of hydra, hydra.mode or hydra.searchpath, no config search path plugin, and no file of
    configs/ that names both hydra and a mode or a search path. Anything else: ask Hydra."""
    import re

    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    from mlpkit.app import config
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv[1:]):
        return False
    for arg in overrides:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.mode", "hydra.searchpath")):
            return False
    if Plugins.instance().discover(SearchPathPlugin):
        return False
    for path in sorted(Path(config.CONFIG_DIR).rglob("*.yaml")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return False
        if "hydra" in text and re.search(r"\bmode\b|searchpath", text):
            return False
    return True


def install_single_compose() -> None:
    """Before a run Hydra composes the whole config once more (Hydra.get_mode) only to read `hydra.mode`,
    a quarter of a second of CPU. When mode_is_unset, that compose can only answer None (as it also does
    when the config fails, which the run's own compose then reports), so answer None without it.
    Also leaves the sweep plugins out of Hydra's plugin scan until they are needed (plugin_scan), and
    composes a grid sweep's job configs once each (install_sweep_config_cache)."""
    import hydra._internal.hydra as hydra_impl

    from mlpkit.app.plugin_scan import install_lazy_plugin_scan

    install_lazy_plugin_scan()
    install_sweep_config_cache()

    original = hydra_impl.Hydra.get_mode
    if getattr(original, "_mlpkit", False):
        return

    def get_mode(self: Any, config_name: Optional[str], overrides: List[str]) -> Any:
        if mode_is_unset(sys.argv, list(overrides)):
            return None
        return original(self, config_name=config_name, overrides=overrides)

    get_mode._mlpkit = True  # type: ignore[attr-defined]
    hydra_impl.Hydra.get_mode = get_mode  # type: ignore[method-assign]


SWEEP_CONFIG_USES = 2  # after mlpkit's check, a grid sweep's job config is composed by the sweeper's check and the launch


def install_sweep_config_cache() -> None:
    """A grid sweep composes each job's config three times: mlpkit's check of every job before the first
    (ValidateSweep), the sweeper's own check (Sweeper.validate_batch_is_legal) and the launch, half a
    second of CPU each. The composition depends only on the sweep's master config and the job's
    overrides, so the first one is kept and the next SWEEP_CONFIG_USES asks get a deep copy of it (with
    the master's resolver cache, as Hydra's own load_sweep_config gives); then it is dropped, so a
    sweeper of many trials (Optuna) holds none. Another master config, or other Hydra overrides in it,
    compose anew."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import OmegaConf

    original = ConfigLoaderImpl.load_sweep_config
    if getattr(original, "_mlpkit", False):
        return

    def load_sweep_config(self: Any, master_config: Any, sweep_overrides: List[str]) -> Any:
        cache = self.__dict__.setdefault("_mlpkit_sweep_configs", {})
        # what Hydra composes from: the master's Hydra overrides (a launcher may add to them, as the Ray
        # cluster launcher adds the absolute sweep directory) and the job's own
        hydra_overrides = tuple(OmegaConf.to_container(master_config.hydra.overrides.hydra))
        key = (id(master_config), str(master_config.hydra.job.config_name), hydra_overrides, tuple(sweep_overrides))
        kept = cache.get(key)
        if kept is None or kept[0] is not master_config:
            composed = original(self, master_config=master_config, sweep_overrides=sweep_overrides)
            cache[key] = [master_config, copy.deepcopy(composed), SWEEP_CONFIG_USES]
            return composed
        kept[2] -= 1
        if kept[2] <= 0:  # its last ask: the kept copy itself, which nothing else holds
            del cache[key]
            composed = kept[1]
        else:
            composed = copy.deepcopy(kept[1])
        OmegaConf.copy_cache(from_config=master_config, to_config=composed)
        return composed

    load_sweep_config._mlpkit = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]


def check_sweep_plugins(argv: List[str]) -> None:
    """ConfigError naming the extra to install when an override selects a sweep plugin that is
    missing (Hydra itself would only say "Could not find 'hydra/sweeper/optuna'")."""
    import importlib.util

    for arg in argv[1:]:
        module, extra = SWEEP_PLUGINS.get(arg.lstrip("+").replace(" ", ""), (None, None))
        if module and importlib.util.find_spec(f"hydra_plugins.{module}") is None:
            raise ConfigError(f"{arg} needs the {module.replace('_', '-')} plugin, which is not installed; "
                              f'install it with: pip install "mlpkit[{extra}]"')


def run(cfg: Any) -> float:
    """Train one run from a composed config inside Hydra; returns the best val loss (the sweep
    objective). A ConfigError ends the program with its message and exit status 2."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from mlpkit.training.launch import detect

    startup.hold()  # a launcher's job process: its imports start now (train.py's: held already)
    hc = HydraConfig.get()
    quiet_file_logs()
    try:
        if cfg.data.get("path") and not Path(str(cfg.data.path)).is_absolute():  # hydra.job.chdir=true moved us
            cfg.data.path = str(Path(hc.runtime.cwd) / str(cfg.data.path))
        job_num = hc.job.num if hc.mode == RunMode.MULTIRUN else None
        return train_from_config(cfg, Path(hc.runtime.output_dir), launcher=hc.launcher, job_num=job_num)
    except ConfigError as err:
        if hc.mode == RunMode.MULTIRUN:  # one job's data did not fit: record it, the sweep goes on
            startup.release()  # (a launcher's process runs the next job with it on)
            log.error("mlpkit: error: %s", err)
            print(f"mlpkit: error: {err} (sweep job {hc.job.num}: {hc.job.override_dirname}; the sweep goes on)",
                  file=sys.stderr, flush=True)
            return float("inf")
        GUARD.discard(refused=True)
        if cfg.trainer.strategy == "ddp" and detect().rank > 0:
            raise SystemExit(2)  # rank 0 says it, once for the job
        exit_with(err)
    except KeyboardInterrupt:
        GUARD.discard()
        raise
    except RunError as err:
        exit_with(err, code=1)


def train_from_config(cfg: Any, run_dir: Path, launcher: Any = None, job_num: Optional[int] = None) -> float:
    """Everything `python train.py` does after Hydra composed `cfg`: validate, build, train into
    `run_dir`, write metrics.json. `job_num` is the job's number in a sweep (-m), None for a
    single run. Raises ConfigError for a bad value or data file."""
    from omegaconf import OmegaConf

    from mlpkit.training.checkpoint import load_checkpoint
    from mlpkit.models.mlp import MODELS, summarize
    from mlpkit.training.tblog import TensorBoardLogger

    start, run_dir = time.perf_counter(), Path(run_dir)
    if VALIDATED != [OmegaConf.to_container(cfg, resolve=True)]:  # a job of a sweep, or a caller of its own
        validate(cfg)
    strategy = build.build_strategy(cfg)
    quiet_rank(strategy)
    writer = strategy.is_writer  # only rank 0 of a ddp job writes into the run directory
    source = record_data_source(cfg, run_dir) if not cfg.resume and writer else None  # before the file is read
    device = build.build_device(cfg.trainer)
    resume_from = run_dir / "checkpoints" / "last.pt" if cfg.resume else None
    if resume_from is not None and not resume_from.is_file():
        raise ConfigError(f"resume={cfg.resume}: no checkpoints/last.pt there")
    data = build.build_data(cfg)
    kwargs = build.model_kwargs(cfg, data)
    model = MODELS[cfg.model.name](**kwargs, seed=None)  # from the global RNG, seeded with cfg.seed
    rows, total = summarize(model, data.in_dim)
    build.set_threads(cfg.trainer, launcher, device, total, len(data.X_train))
    warnings = [*data.warnings, *([build.STEP_WARNING] if build.flat_units(cfg) else [])]
    build.describe(cfg, data, kwargs, rows, total, device, job_num, warnings)

    best = build.build_best_epoch(cfg)
    pruner = build.build_pruner(cfg.pruning, run_dir, job_num)
    purge = int(load_checkpoint(resume_from)["global_step"]) + 1 if resume_from is not None else None
    logger = TensorBoardLogger(run_dir, purge_step=purge) if writer else None
    trainer = build.build_trainer(cfg, device, run_dir, logger, best, pruner,
                                  handle_signals=signal.getsignal(signal.SIGINT) is not on_signal, strategy=strategy,
                                  task=data.task)
    # the task's name as a plain str: a Task object would not load with weights_only=True
    trainer.extra_state = {"model_kwargs": kwargs, "task": data.task.name, "classes": data.classes}
    if writer:
        build.save_run_data(run_dir, data, cfg.model.name, kwargs)
    if source is not None:
        from mlpkit.files import write_json

        write_json(run_dir / DATA_SOURCE, source)
    TRAINER[:] = [trainer]
    GUARD.began = True  # from here on a signal is recorded as `interrupted` and the directory is the run's
    startup.release()  # imports, config, data and model are ready: collection goes on for the epochs
    result = trainer.fit(model, data, resume_from=resume_from)
    result.warnings = warnings
    if build.flat_units(cfg):
        build.note_flat_units(result)
    refitted = False
    if cfg.trainer.refit and writer and trainer.stop_signal is None:
        from mlpkit.app.refit import refit

        refitted = refit(cfg, data, kwargs, result, device, run_dir, strategy, TRAINER) is not None
        second = TRAINER[-1]
        TRAINER[:] = [trainer]  # a signal from here on is the run's, and so is one that stopped the refit
        trainer.stop_signal = trainer.stop_signal or second.stop_signal
    if trainer.stop_signal is not None and result.status != RunStatus.INTERRUPTED:  # during the final save or test
        result.status = RunStatus.INTERRUPTED
        result.message = (f"interrupted by {signal.Signals(trainer.stop_signal).name} "
                          + ("at the end of the refit; continue with resume=<run_dir>, which refits again"
                             if refitted else f"after epoch {result.epochs_run}; continue with resume=<run_dir>"))
    if writer:
        build.record_run(build.Record(cfg, data, device, run_dir, total, start, trainer.first_step_time),
                         result, logger)
    elif getattr(strategy, "lost", False):  # rank 0 is gone: this rank says why it stops
        print(f"mlpkit: {result.message}", file=sys.stderr, flush=True)
    if result.status == RunStatus.INTERRUPTED or trainer.stop_signal is not None:
        raise SystemExit(130)
    if result.status == RunStatus.DIVERGED:
        return float("inf")  # the worst objective: a bad trial for Optuna, and the sweep goes on
    return float(result.best_val_loss)


class ValidateSweep(HydraCallback):
    """Hydra callback: check a single run before its directory exists, and every job of a grid sweep
    before the first one runs."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        check_run(config)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from mlpkit.app.config import check_overrides
        from mlpkit.training.launch import detect

        launch = detect()
        if launch.distributed:
            exit_with(ConfigError(f"a sweep (-m) cannot run as {launch.world_size} processes of {launch.launcher}: "
                                  "each would launch the whole sweep; start the sweep once and give its jobs "
                                  "trainer.strategy=ddp with hydra/launcher=submitit_slurm "
                                  "hydra.launcher.tasks_per_node=N"))
        loader = GlobalHydra.instance().config_loader()
        overrides = task_overrides(config)
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
            batches = BasicSweeper.split_arguments(parsed, None)
        except Exception:  # interval()/range sweeps of other sweepers: check the base config only
            batches = [[[o for o in overrides if "," not in o and "(" not in o]]]
        for job in batches[0] if batches else []:
            try:
                check_overrides(list(job))
                try:
                    job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(job))
                except (HydraException, OmegaConfBaseException) as err:  # Hydra's own, in one line
                    raise ConfigError(str(err).strip().splitlines()[0]) from None
                checked_job_config(job_cfg, list(job))
            except ConfigError as err:
                exit_with(ConfigError(f"{err} (in sweep job: {' '.join(job) or 'defaults'})"))
        try:  # the sweep's directory, new or empty and this process's until the sweep ends (its jobs are in it)
            try:
                sweep_dir = config.hydra.sweep.dir
            except OmegaConfBaseException as err:
                raise resolver_error("hydra.sweep.dir", err) from None
            subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
            if not any(k in subdir for k in ("hydra.job.num", "hydra.job.id", "hydra.job.override_dirname")):
                raise ConfigError(f"hydra.sweep.subdir={subdir} gives every job of the sweep the same directory, "
                                  "so each would overwrite the one before; include ${hydra.job.num}, e.g. "
                                  "hydra.sweep.subdir='${hydra.job.num}'")
            claim_dir(Path(sweep_dir), "hydra.sweep.dir")
        except ConfigError as err:
            GUARD.discard()
            exit_with(err)
        startup.release()  # a launcher's process may wait on its jobs for hours: collection goes on
