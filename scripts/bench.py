"""mlpkit against the peers a user would otherwise reach for, measured side by side.

    python scripts/bench.py                      # W1 and W2, all peers installed, 3 repetitions
    python scripts/bench.py --workloads W2 --reps 5 --epochs 4
    python scripts/bench.py --tiny               # a smoke run on tiny data (what the test suite runs)
    python scripts/bench.py --only-tables        # a user's table: load + preprocess, and predict
    python scripts/bench.py --only-epochs        # XOR: seconds per epoch in a short and a long run
    python scripts/bench.py --startup            # `python train.py trainer.max_epochs=1` against the floor
    python scripts/bench.py --load               # load + preprocess of a 1M-row mixed CSV / pandas.read_csv
    python scripts/bench.py --stream             # one data.stream=true epoch on 1M and 10M rows: peak RSS, rows/s

Workloads (CPU; Adam lr 1e-3, ReLU, 80/10/10 split):
    W1  60,000 x 784 -> 10 classes, hidden [256, 256], batch 128   (MNIST-sized)
    W2  25,000 x 20  -> 2 classes,  hidden [64, 64],   batch 32    (small)

Peers: mlpkit's Trainer (with its TensorBoard logging and checkpoints), a hand-written
PyTorch loop on in-memory tensors, the same loop over a torch DataLoader, scikit-learn's
MLPClassifier (partial_fit, one epoch per call), and PyTorch Lightning and Keras when
installed. Within a repetition the peers run one after another on the same data; an
epoch is timed as training plus one pass over the validation split, the first epoch of
each run is a warm-up and not counted. Prints medians and ratios and writes JSON.

Also measured (unless --skip-extra): the start-up of `python train.py` (process start to
first training step) and what importing torch and torch._dynamo alone take, the wall time
of 2-job W2 sweeps (3 and 20 epochs per job) with the basic vs the joblib launcher, and
the peak memory of a W1 run, and a user's table (--table-rows, default 1,000,000 rows of
mixed columns with missing values): mlpkit's load + preprocess against `pandas.read_csv` of
the same file alone (each in a fresh process), and `python predict.py` on it: rows per
second and peak memory.

--startup times whole processes, one after another in turn (floor, run, predict --help; --reps rounds,
default 5, medians): the floor that no PyTorch + Hydra + TensorBoard program goes under (a fresh
interpreter that imports torch, hydra and tensorboard and takes one Adam step), the default run
`python train.py trainer.max_epochs=1` (digits; data, model, the epoch, test metrics, TensorBoard,
images, checkpoints), and `python predict.py --help`; it prints the run's ratio to the floor and
the difference. On a shared machine the absolute seconds move from run to run; the ratio, measured
in alternation, moves much less.

--only-epochs measures whether an epoch's cost depends on the run's length: XOR full batch
(the xor experiment's hidden_8 job, with checkpoints and TensorBoard as train.py writes them)
for 200 and for 1,600 epochs: seconds per epoch (the median epoch, the first left out: the mean
also carries the first decision-boundary image, ~0.1 s, which TensorBoard's 5% budget always lets
through, a cost that a short run spreads over few epochs) and their ratio, and the means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from mlpkit.app.build import small_model_threads  # noqa: E402
from mlpkit.data import load_dataset  # noqa: E402

WORKLOADS = {
    "W1": dict(n_samples=60000, n_features=784, n_classes=10, hidden=[256, 256], batch=128),
    "W2": dict(n_samples=25000, n_features=20, n_classes=2, hidden=[64, 64], batch=32),
    "tiny": dict(n_samples=600, n_features=10, n_classes=3, hidden=[16], batch=32),
}
DEFAULT_THREADS = torch.get_num_threads()


def make_data(w: dict):
    return load_dataset("classification", n_samples=w["n_samples"], n_features=w["n_features"],
                        n_classes=w["n_classes"], val_fraction=0.1, test_fraction=0.1, seed=0)


def torch_model(w: dict, data) -> torch.nn.Sequential:
    layers, d = [], data.in_dim
    for h in w["hidden"]:
        layers += [torch.nn.Linear(d, h), torch.nn.ReLU()]
        d = h
    layers.append(torch.nn.Linear(d, data.out_dim))
    return torch.nn.Sequential(*layers)


def _targets(data):
    """Class indices as (N,) long, whatever the task encoding."""
    return data.y_train.reshape(-1).long(), data.y_val.reshape(-1).long()


# -- peers: each returns the list of per-epoch seconds ----------------------------------


def peer_mlpkit(w: dict, data, epochs: int, workdir: Path) -> List[float]:
    from mlpkit import MLP, TensorBoardLogger, Trainer

    torch.manual_seed(0)
    model = MLP(data.in_dim, w["hidden"], data.out_dim, activation="relu")
    n_params = sum(p.numel() for p in model.parameters())
    torch.set_num_threads(small_model_threads(n_params, w["batch"]) or DEFAULT_THREADS)  # what train.py does
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    logger = TensorBoardLogger(run_dir)
    trainer = Trainer(optimizer="adam", lr=1e-3, max_epochs=epochs, batch_size=w["batch"], logger=logger,
                      run_dir=run_dir, handle_signals=False)
    result = trainer.fit(model, data)
    logger.close()
    return result.history["epoch_seconds"]


def _handwritten(w: dict, data, epochs: int, loader: bool) -> List[float]:
    torch.set_num_threads(DEFAULT_THREADS)
    torch.manual_seed(0)
    model = torch_model(w, data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, Xv = data.X_train, data.X_val
    y, yv = _targets(data)
    if data.out_dim == 1:  # binary as two-logit softmax keeps the loop identical for both workloads
        model[-1] = torch.nn.Linear(model[-1].in_features, 2)
    if loader:
        from torch.utils.data import DataLoader, TensorDataset
        dl = DataLoader(TensorDataset(X, y), batch_size=w["batch"], shuffle=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        batches = dl if loader else (
            (X[idx], y[idx]) for idx in torch.randperm(len(X)).split(w["batch"]))
        for xb, yb in batches:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(Xv), yv).item()
        times.append(time.perf_counter() - t0)
    assert val_loss == val_loss
    return times


def peer_handwritten(w, data, epochs, workdir):
    return _handwritten(w, data, epochs, loader=False)


def peer_dataloader(w, data, epochs, workdir):
    return _handwritten(w, data, epochs, loader=True)


def peer_sklearn(w: dict, data, epochs: int, workdir: Path) -> List[float]:
    import warnings

    from sklearn.neural_network import MLPClassifier

    X, Xv = data.X_train.numpy(), data.X_val.numpy()
    y, yv = (t.numpy() for t in _targets(data))
    clf = MLPClassifier(hidden_layer_sizes=tuple(w["hidden"]), batch_size=w["batch"], learning_rate_init=1e-3,
                        random_state=0)
    classes = sorted(set(y.tolist()))
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            t0 = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            clf.score(Xv, yv)
            times.append(time.perf_counter() - t0)
    return times


def peer_lightning(w: dict, data, epochs: int, workdir: Path) -> List[float]:
    import lightning as L  # optional extra

    torch.set_num_threads(DEFAULT_THREADS)
    y, yv = _targets(data)
    net = torch_model(w, data)
    if data.out_dim == 1:
        net[-1] = torch.nn.Linear(net[-1].in_features, 2)
    times: List[float] = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            xb, yb = batch
            return torch.nn.functional.cross_entropy(self.net(xb), yb)

        def validation_step(self, batch, _):
            xb, yb = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(xb), yb))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

        def on_train_epoch_start(self):
            self._t0 = time.perf_counter()

        def on_validation_epoch_end(self):
            if hasattr(self, "_t0") and not self.trainer.sanity_checking:
                times.append(time.perf_counter() - self._t0)

    from torch.utils.data import DataLoader, TensorDataset
    train = DataLoader(TensorDataset(data.X_train, y), batch_size=w["batch"], shuffle=True)
    val = DataLoader(TensorDataset(data.X_val, yv), batch_size=len(yv))
    L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
              default_root_dir=str(workdir)).fit(Module(), train, val)
    return times


def peer_keras(w: dict, data, epochs: int, workdir: Path) -> List[float]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # optional extra

    y, yv = (t.numpy() for t in _targets(data))
    model = keras.Sequential([keras.Input((data.in_dim,))] + [keras.layers.Dense(h, activation="relu")
                                                               for h in w["hidden"]]
                             + [keras.layers.Dense(max(2, data.out_dim))])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times: List[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(data.X_train.numpy(), y, batch_size=w["batch"], epochs=epochs, verbose=0,
              validation_data=(data.X_val.numpy(), yv), callbacks=[Timer()])
    return times


PEERS: Dict[str, Callable] = {
    "mlpkit": peer_mlpkit,
    "hand-written loop": peer_handwritten,
    "hand-written + DataLoader": peer_dataloader,
    "scikit-learn": peer_sklearn,
    "lightning": peer_lightning,
    "keras (torch backend)": peer_keras,
}
OPTIONAL = {"lightning": "lightning", "keras (torch backend)": "keras"}


def available(name: str) -> bool:
    if name not in OPTIONAL:
        return True
    import importlib.util
    return importlib.util.find_spec(OPTIONAL[name]) is not None


def matmul_gflops(n: int = 1024, reps: int = 20) -> float:
    """The machine's float32 matmul speed with torch's default threads (the W1 ceiling)."""
    torch.set_num_threads(DEFAULT_THREADS)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def step_flops(w: dict) -> float:
    """Multiply-adds x2 of one training step (forward + backward = 3x forward)."""
    dims = [w["n_features"], *w["hidden"], w["n_classes"] if w["n_classes"] > 2 else 1]
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 3 * 2 * macs * w["batch"]


def bench_workload(name: str, peers: List[str], reps: int, epochs: int, workdir: Path) -> Dict:
    w = WORKLOADS[name]
    data = make_data(w)
    runs: Dict[str, List[float]] = {p: [] for p in peers}
    for rep in range(reps):
        for peer in peers:
            times = PEERS[peer](w, data, epochs, workdir)
            runs[peer].extend(times[1:] if len(times) > 1 else times)  # first epoch: warm-up
            print(f"  {name} rep {rep + 1}/{reps} {peer:<26} {statistics.median(times[1:] or times):.3f} s/epoch",
                  flush=True)
    med = {p: statistics.median(v) for p, v in runs.items()}
    steps = -(-len(data.X_train) // w["batch"])
    return {"median_s_per_epoch": med, "epochs_timed": {p: len(v) for p, v in runs.items()},
            "steps_per_epoch": steps, "gflop_per_epoch": step_flops(w) * steps / 1e9}


def startup_seconds(workdir: Path, reps: int = 3) -> float:
    """Median seconds from launching `python train.py` to its first training step."""
    out = []
    for _ in range(reps):
        t0 = time.time()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "trainer.max_epochs=1", "trainer.progress=false"],
                       cwd=workdir, check=True, capture_output=True)
        latest = max(workdir.glob("outputs/runs/*/*/metrics.json"), key=lambda p: p.stat().st_mtime)
        out.append(json.loads(latest.read_text())["first_step_unix_time"] - t0)
    return statistics.median(out)


def import_seconds(reps: int = 3) -> Dict[str, float]:
    """Median seconds a fresh interpreter takes to import torch, and then torch._dynamo (which the first
    use of a torch.optim optimiser imports): the floor under any run's start-up."""
    code = ("import time; t = time.perf_counter(); import torch; t1 = time.perf_counter(); import torch._dynamo; "
            "print(t1 - t, time.perf_counter() - t1)")
    runs = [list(map(float, subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True).stdout.split())) for _ in range(reps)]
    return {"torch": statistics.median(r[0] for r in runs), "torch._dynamo": statistics.median(r[1] for r in runs)}


def sweep_seconds(workdir: Path, launcher: str, epochs: int) -> float:
    args = [sys.executable, str(ROOT / "train.py"), "-m", "data=classification", "data.n_samples=25000",
            "data.n_features=20", "data.n_classes=2", "data.val_fraction=0.1", "data.test_fraction=0.1",
            "model.hidden=[64,64]", "trainer.batch_size=32", f"trainer.max_epochs={epochs}",
            "early_stopping=none", "trainer.progress=false", "seed=0,1"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    t0 = time.perf_counter()
    subprocess.run(args, cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - t0


def w1_peak_memory_mb(workdir: Path, epochs: int) -> Dict[str, float]:
    """Peak RSS of a whole `python train.py` W1 run, and the size of its data as float32."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    args = [sys.executable, str(ROOT / "train.py"), "data=classification", "data.n_samples=60000",
            "data.n_features=784", "data.n_classes=10", "data.val_fraction=0.1", "data.test_fraction=0.1",
            "model.hidden=[256,256]", "trainer.batch_size=128", f"trainer.max_epochs={epochs}",
            "trainer.progress=false"]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=workdir, check=True, capture_output=True, text=True)
    peak_kb = int(out.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": peak_kb / 1024, "data_mb": 60000 * 784 * 4 / 2 ** 20}


def mixed_frame(rows: int, rng):
    """A table as users have them: 4 numeric columns (5% missing), 3 text categories (one with
    missing cells, one with 200 values), a True/False column and a binary text target."""
    import numpy as np
    import pandas as pd

    cols = {f"x{i}": rng.normal(i, 1 + i, rows).round(4) for i in range(4)}
    for i in range(4):
        cols[f"x{i}"][rng.random(rows) < 0.05] = np.nan
    cols["colour"] = rng.choice(["red", "green", "blue", "black", "white"], rows)
    cols["colour"] = np.where(rng.random(rows) < 0.05, None, cols["colour"])
    cols["city"] = rng.choice([f"city_{i:03d}" for i in range(200)], rows)
    cols["plan"] = rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1])
    cols["member"] = rng.random(rows) < 0.4
    logit = cols["x0"].copy()
    logit[np.isnan(logit)] = 0
    logit = logit - 0.5 + (cols["plan"] == "pro") * 1.5 + cols["member"] * 0.5
    cols["churn"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(cols)


def write_mixed_table(path: Path, rows: int, seed: int = 0) -> Path:
    """mixed_frame's table as a CSV file."""
    import numpy as np

    mixed_frame(rows, np.random.default_rng(seed)).to_csv(path, index=False)
    return path


def write_mixed_parquet(path: Path, rows: int, seed: int = 0, row_group: int = 250_000) -> Path:
    """mixed_frame's table as Parquet, written a row group at a time (never whole in memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, row_group):
        block = pa.Table.from_pandas(mixed_frame(min(row_group, rows - start), rng), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, block.schema)
        writer.write_table(block)
    writer.close()
    return path


def _timed_child(code: str, workdir: Path, src: Path = ROOT / "src") -> Dict[str, float]:
    """Run `code` in a fresh interpreter (mlpkit from `src`) that prints its own seconds; add its peak RSS in MB."""
    wrapper = (code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", wrapper], cwd=workdir, check=True, capture_output=True, text=True,
                         env=env).stdout.split()
    return {"seconds": float(out[-2]), "peak_rss_mb": float(out[-1])}


def table_bench(workdir: Path, rows: int, reps: int = 3) -> Dict:
    """Load + preprocess a mixed table against pandas.read_csv of it alone (load_bench); predict throughput."""
    result = load_bench(workdir, rows, reps)
    path = workdir / "mixed.csv"
    small = write_mixed_table(workdir / "mixed_small.csv", 20_000, seed=1)
    run_dir = workdir / "table_run"
    subprocess.run([sys.executable, str(ROOT / "train.py"), "data=csv", f"data.path={small}", "data.target=churn",
                    "trainer.max_epochs=2", "trainer.progress=false", f"hydra.run.dir={run_dir}"],
                   cwd=workdir, check=True, capture_output=True)
    predict = ("import time, sys; from mlpkit.predict import main; t = time.perf_counter(); "
               f"main([{str(run_dir)!r}, {str(path)!r}, '-o', {str(workdir / 'pred.csv')!r}]); "
               "print(time.perf_counter() - t)")
    child = _timed_child(predict, workdir)
    result.update(predict_s=child["seconds"], predict_rows_per_s=rows / child["seconds"],
                  predict_peak_mb=child["peak_rss_mb"])
    return result


RSS_WRAPPER = """import atexit, os, resource, runpy, sys
def _report():
    with open(os.path.join(os.environ["BENCH_RSS_DIR"], "rank%s" % os.environ.get("RANK", "0")), "w") as fh:
        fh.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_report)
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def stream_bench(workdir: Path, sizes: List[int], procs: Optional[List[int]] = None) -> Dict:
    """One streamed epoch (`data.stream=true`) on generated Parquet tables of each size, on each number of
    processes (2+: torchrun --standalone, trainer.strategy=ddp; OMP_NUM_THREADS=1 unless set): the peak
    RSS of each process (its own ru_maxrss, written at exit by a wrapper around train.py; also ru_maxrss of the waited-for children,
    the largest of torchrun's agent and its ranks), rows per second, and the ratio of the peaks."""
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(p.stderr[-3000:]) if p.returncode else None; "
            "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(p.returncode, r.ru_maxrss, r.ru_utime + r.ru_stime)")
    procs = procs or [1]
    wrapper = workdir / "rss_wrapper.py"
    wrapper.write_text(RSS_WRAPPER)
    out: Dict = {"sizes": {}}
    for rows in sizes:
        # row groups of 250,000 rows, at least 4 (each process of a job reads its own)
        path = write_mixed_parquet(workdir / f"stream_{rows}.parquet", rows, row_group=min(250_000, -(-rows // 4)))
        for n in procs:
            run_dir = workdir / f"stream_run_{rows}_{n}"
            rss_dir = workdir / f"rss_{rows}_{n}"
            rss_dir.mkdir()
            launcher = [sys.executable] if n == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                "--log-dir", str(workdir / f"torchrun_logs_{rows}_{n}")]   # not a torchelastic_* left in /tmp
            args = [*launcher, str(wrapper), str(ROOT / "train.py"), "data=csv", f"data.path={path}",
                    "data.target=churn", "data.stream=true", "model.hidden=[32]", "trainer.batch_size=4096",
                    "trainer.max_epochs=1", "early_stopping=none", "trainer.progress=false",
                    f"hydra.run.dir={run_dir}", *(["trainer.strategy=ddp"] if n > 1 else [])]
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code, *args], cwd=workdir, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "BENCH_RSS_DIR": str(rss_dir),
                                       # one thread per process, as torchrun sets it (2 threads of
                                       # one process on a loaded 2-core machine ran 3x slower)
                                       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            wall = time.perf_counter() - t0
            code_, peak_kb, cpu = proc.stdout.split()[-3:]
            code_, peak_kb, cpu = int(code_), int(peak_kb), float(cpu)
            if code_:
                raise RuntimeError(f"the streamed run on {rows} rows, {n} processes failed: {proc.stderr[-2000:]}")
            ranks = [int((rss_dir / f"rank{r}").read_text()) / 1024 for r in range(n)]
            m = json.loads((run_dir / "metrics.json").read_text())
            n_train = m.get("steps_per_epoch", 0) * 4096
            epoch_s = m["history"]["epoch_seconds"][0]
            out["sizes"].setdefault(rows, {})[n] = {
                "peak_rss_mb": max(ranks), "peak_rss_mb_by_rank": ranks, "peak_rss_mb_children": peak_kb / 1024,
                "wall_s": wall, "rows_per_s": rows / wall, "cpu_s": cpu, "rows_per_cpu_s": rows / cpu,
                "load_average_before": load, "load_average_after": os.getloadavg()[0], "epoch_s": epoch_s,
                "train_rows_in_epoch": n_train, "train_rows_per_s_in_epoch": min(n_train, rows) / epoch_s,
                "file_mb": path.stat().st_size / 2 ** 20, "test": m["test"]}
            print(f"  streamed {rows:>11,} rows, {n} process{'es' if n > 1 else ''}: peak RSS "
                  f"{' / '.join(f'{r:.0f}' for r in ranks)} MB by rank (children's max {peak_kb / 1024:.0f} MB), "
                  f"{wall:6.1f} s ({rows / wall:,.0f} rows/s over the whole run; epoch {epoch_s:.1f} s, "
                  f"{min(n_train, rows) / epoch_s:,.0f} train rows/s); CPU {cpu:.1f} s; load average "
                  f"{load:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)
        path.unlink()
    for n in procs:
        peaks = [by_procs[n]["peak_rss_mb"] for by_procs in out["sizes"].values()]
        out[f"peak_ratio_{n}"] = max(peaks) / min(peaks)
    out["peak_ratio"] = out[f"peak_ratio_{procs[0]}"]
    return out


def load_bench(workdir: Path, rows: int, reps: int = 3, baseline: Optional[Path] = None) -> Dict:
    """mlpkit's load + preprocess of the mixed table against pandas.read_csv of the same file, alternated,
    each in a fresh process, twice: every category one-hot (the Python API's default: 219 inputs) and
    the tabular recipe's scaling (`python train.py data=csv`: robust, wide categories as codes); with
    `baseline` (another checkout's src/), its loads too, in the same rounds."""
    path = write_mixed_table(workdir / "mixed.csv", rows)
    read = "import time, pandas as pd; t = time.perf_counter(); pd.read_csv({p!r}); print(time.perf_counter() - t)"
    # each child imports what it uses before its clock starts: the data work is compared, not imports
    load = ("import time, pandas, pyarrow.csv, sklearn.compose, sklearn.impute, sklearn.pipeline, "
            "sklearn.preprocessing; from mlpkit import load_dataset; from mlpkit.data import table, preprocess; "
            "t = time.perf_counter(); load_dataset('csv', path={p!r}, target='churn'{kw}); "
            "print(time.perf_counter() - t)")
    kinds = {"mlpkit_load": "", "mlpkit_recipe_load": ", numeric='robust', onehot_max=8"}
    result: Dict = {"rows": rows, "file_mb": path.stat().st_size / 2 ** 20, "read_csv_s": []}
    for _ in range(reps):
        result["read_csv_s"].append(_timed_child(read.format(p=str(path)), workdir)["seconds"])
        for key, kw in kinds.items():
            child = _timed_child(load.format(p=str(path), kw=kw), workdir)
            result.setdefault(f"{key}_s", []).append(child["seconds"])
            result[f"{key}_peak_mb"] = child["peak_rss_mb"]
            if baseline is not None:
                result.setdefault(f"baseline_{key}_s", []).append(
                    _timed_child(load.format(p=str(path), kw=kw), workdir, baseline)["seconds"])
    read_s = statistics.median(result["read_csv_s"])
    result["load_ratio"] = statistics.median(result["mlpkit_load_s"]) / read_s
    result["recipe_load_ratio"] = statistics.median(result["mlpkit_recipe_load_s"]) / read_s
    if baseline is not None:
        result["baseline_ratio"] = statistics.median(result["baseline_mlpkit_load_s"]) / read_s
        result["baseline_recipe_ratio"] = statistics.median(result["baseline_mlpkit_recipe_load_s"]) / read_s
    return result


def epoch_cost(epochs: int, workdir: Path) -> Dict[str, float]:
    """Median and mean seconds per epoch (the first left out) of an XOR full-batch run of `epochs` epochs."""
    from mlpkit import MLP, TensorBoardLogger, Trainer

    data = load_dataset("xor", seed=0)
    torch.manual_seed(0)
    model = MLP(data.in_dim, [8], data.out_dim, activation="tanh")
    torch.set_num_threads(1)  # what train.py picks for a model this small
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    logger = TensorBoardLogger(run_dir)
    result = Trainer(optimizer="adam", lr=0.05, max_epochs=epochs, batch_size=0, run_dir=run_dir, logger=logger,
                     handle_signals=False).fit(model, data)
    logger.close()
    torch.set_num_threads(DEFAULT_THREADS)
    seconds = result.history["epoch_seconds"][1:]
    return {"median": statistics.median(seconds), "mean": statistics.mean(seconds)}


def epochs_bench(workdir: Path, reps: int) -> Dict[str, float]:
    """Seconds per epoch at 200 and 1,600 epochs (median of `reps` runs each) and their ratio."""
    out: Dict[str, float] = {}
    for epochs in (200, 1600):
        runs = [epoch_cost(epochs, workdir) for _ in range(reps)]
        for stat in ("median", "mean"):
            out[f"s_per_epoch_{epochs}_{stat}"] = statistics.median(r[stat] for r in runs)
    out["ratio"] = out["s_per_epoch_1600_median"] / out["s_per_epoch_200_median"]
    out["ratio_of_means"] = out["s_per_epoch_1600_mean"] / out["s_per_epoch_200_mean"]
    return out


FLOOR_CODE = ("import torch, hydra, tensorboard\n"
              "m = torch.nn.Linear(64, 10)\n"
              "opt = torch.optim.Adam(m.parameters(), lr=1e-3)\n"
              "torch.nn.functional.cross_entropy(m(torch.randn(32, 64)), torch.randint(0, 10, (32,))).backward()\n"
              "opt.step()\n")


def startup_bench(workdir: Path, reps: int) -> Dict:
    """Seconds of whole processes, alternated: the floor, the default 1-epoch run, predict.py --help."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH"))
                                                       if p)}
    commands = {
        "floor": [sys.executable, "-c", FLOOR_CODE],
        "run": [sys.executable, str(ROOT / "train.py"), "trainer.max_epochs=1", "trainer.progress=false"],
        "predict_help": [sys.executable, str(ROOT / "predict.py"), "--help"],
    }
    seconds: Dict[str, List[float]] = {name: [] for name in commands}
    cpu: Dict[str, List[float]] = {name: [] for name in commands}
    for i in range(reps):
        for name, cmd in commands.items():
            if name == "run":
                cmd = cmd + [f"hydra.run.dir={workdir / f'startup_run_{i}'}"]
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
            seconds[name].append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    med = {name: statistics.median(v) for name, v in seconds.items()}
    cpu_med = {name: statistics.median(v) for name, v in cpu.items()}
    return {"seconds": seconds, "median": med, "ratio": med["run"] / med["floor"],
            "over_floor": med["run"] - med["floor"], "cpu_seconds": cpu, "cpu_median": cpu_med,
            "cpu_ratio": cpu_med["run"] / cpu_med["floor"], "cpu_over_floor": cpu_med["run"] - cpu_med["floor"],
            "reps": reps}


def print_startup(r: Dict) -> None:
    med, cpu = r["median"], r["cpu_median"]
    spread = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in r["seconds"].items()}
    print(f"start-up, whole processes, alternated, median of {r['reps']} (wall seconds, their range; CPU seconds):")
    rows = [("floor (import torch, hydra, tensorboard; one Adam step)", "floor"),
            ("python train.py trainer.max_epochs=1", "run"), ("python predict.py --help", "predict_help")]
    for label, key in rows:
        print(f"  {label:<56} {med[key]:6.2f} s  ({spread[key]:>11})  cpu {cpu[key]:6.2f} s")
    print(f"  run / floor: {r['ratio']:.2f}x wall ({r['over_floor']:+.2f} s), "
          f"{r['cpu_ratio']:.2f}x cpu ({r['cpu_over_floor']:+.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2"], choices=list(WORKLOADS))
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: 3; 5 with --startup)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is a warm-up)")
    parser.add_argument("--tiny", action="store_true", help="tiny workload, 1 rep, no extras: a smoke test")
    parser.add_argument("--sweep-epochs", nargs="+", type=int, default=[3, 20],
                        help="epochs per job of the 2-job W2 sweeps (default: %(default)s)")
    parser.add_argument("--skip-extra", action="store_true", help="skip start-up, sweep and memory measurements")
    parser.add_argument("--table-rows", type=int, default=1_000_000, help="rows of the mixed table (default: %(default)s)")
    parser.add_argument("--only-tables", action="store_true", help="measure only the table load and predict")
    parser.add_argument("--only-epochs", action="store_true",
                        help="measure only the per-epoch cost of a 200- and a 1,600-epoch XOR run")
    parser.add_argument("--startup", action="store_true",
                        help="measure only start-up: the floor, the default 1-epoch run, predict.py --help "
                             "(whole processes, alternated; --reps rounds, default 5)")
    parser.add_argument("--load", action="store_true",
                        help="measure only load + preprocess of the mixed table (--table-rows) against pandas.read_csv")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="with --load: also time the load of another checkout's src/ folder, in the same rounds")
    parser.add_argument("--stream", action="store_true",
                        help="measure only one streamed epoch (data.stream=true) on generated Parquet tables of "
                             "--stream-rows rows: peak RSS and rows/s, one process per size")
    parser.add_argument("--stream-rows", nargs="+", type=int, default=[1_000_000, 10_000_000],
                        help="table sizes of --stream (default: %(default)s)")
    parser.add_argument("--stream-procs", nargs="+", type=int, default=[1],
                        help="numbers of processes of --stream; 2+ run torchrun --standalone with "
                             "trainer.strategy=ddp (default: %(default)s)")
    parser.add_argument("--json", default="bench.json", help="where to write the results (default: %(default)s)")
    args = parser.parse_args()
    if args.reps is None:
        args.reps = 5 if args.startup else 3
    if args.startup:
        with tempfile.TemporaryDirectory() as tmp:
            result = startup_bench(Path(tmp), args.reps)
        print_startup(result)
        Path(args.json).write_text(json.dumps({"startup": result}, indent=2) + "\n")
        print(f"wrote {args.json}")
        return 0
    if args.load or args.stream:
        with tempfile.TemporaryDirectory() as tmp:
            result = {}
            if args.load:
                t = result["load"] = load_bench(Path(tmp), args.table_rows, args.reps, args.baseline_src)
                print(f"table of {t['rows']:,} rows ({t['file_mb']:.0f} MB CSV): pandas.read_csv "
                      f"{statistics.median(t['read_csv_s']):.2f} s; mlpkit load + preprocess, every category "
                      f"one-hot {statistics.median(t['mlpkit_load_s']):.2f} s: {t['load_ratio']:.2f}x read_csv "
                      f"(peak {t['mlpkit_load_peak_mb']:.0f} MB); the tabular recipe's "
                      f"{statistics.median(t['mlpkit_recipe_load_s']):.2f} s: {t['recipe_load_ratio']:.2f}x "
                      f"(peak {t['mlpkit_recipe_load_peak_mb']:.0f} MB); medians of {args.reps}, alternated, "
                      f"load average {os.getloadavg()[0]:.1f}")
                if "baseline_ratio" in t:
                    print(f"  baseline {args.baseline_src}: {t['baseline_ratio']:.2f}x and "
                          f"{t['baseline_recipe_ratio']:.2f}x read_csv (same rounds)")
            if args.stream:
                s = result["stream"] = stream_bench(Path(tmp), args.stream_rows, args.stream_procs)
                for n in args.stream_procs:
                    print(f"streamed, {n} process{'es' if n > 1 else ''}: peak RSS largest / smallest table = "
                          f"{s[f'peak_ratio_{n}']:.2f}x")
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
        return 0
    if args.tiny:
        args.workloads, args.reps, args.epochs, args.skip_extra = ["tiny"], 1, 2, True
    peers = [p for p in args.peers if available(p)]
    skipped = [p for p in args.peers if p not in peers]

    results: Dict = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                                 "torch_threads": DEFAULT_THREADS, "python": platform.python_version()},
                     "skipped_peers": skipped, "workloads": {}}
    if not (args.tiny or args.only_tables or args.only_epochs):
        results["machine"]["matmul_gflops"] = matmul_gflops()
    if args.only_tables or args.only_epochs:
        args.workloads, args.skip_extra = [], True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.only_tables or not (args.skip_extra or args.tiny):
            results["table"] = table_bench(workdir, args.table_rows)
        if args.only_epochs:
            results["epochs"] = epochs_bench(workdir, args.reps)
        for name in args.workloads:
            results["workloads"][name] = bench_workload(name, peers, args.reps, args.epochs, workdir)
        if not args.skip_extra:
            results["startup_seconds"] = startup_seconds(workdir)
            results["import_seconds"] = import_seconds()
            results["sweep_2_jobs_W2"] = {}
            for epochs in args.sweep_epochs:
                basic = sweep_seconds(workdir, "basic", epochs)
                parallel = sweep_seconds(workdir, "joblib", epochs)
                results["sweep_2_jobs_W2"][f"{epochs}_epochs"] = {"basic_s": basic, "joblib_s": parallel,
                                                                  "speedup": basic / parallel}
            results["w1_memory"] = w1_peak_memory_mb(workdir, 1)

    print()
    for name, r in results["workloads"].items():
        med = r["median_s_per_epoch"]
        base = med.get("hand-written loop")
        print(f"{name}: {r['steps_per_epoch']} steps/epoch, {r['gflop_per_epoch']:.1f} GFLOP/epoch")
        print(f"  {'peer':<26} {'s/epoch':>8} {'vs hand-written':>16} {'GFLOP/s':>8}")
        for peer, s in sorted(med.items(), key=lambda kv: kv[1]):
            ratio = f"{s / base:.2f}x" if base else "-"
            print(f"  {peer:<26} {s:>8.3f} {ratio:>16} {r['gflop_per_epoch'] / s:>8.1f}")
    if "matmul_gflops" in results["machine"]:
        print(f"matmul (1024^2, float32, {DEFAULT_THREADS} threads): {results['machine']['matmul_gflops']:.1f} GFLOP/s")
    if "startup_seconds" in results:
        sw = results["sweep_2_jobs_W2"]
        mem = results["w1_memory"]
        imp = results["import_seconds"]
        print(f"start-up, process start to first training step: {results['startup_seconds']:.2f} s "
              f"(of which import torch {imp['torch']:.2f} s, import torch._dynamo {imp['torch._dynamo']:.2f} s)")
        for length, r in sw.items():
            print(f"2-job W2 sweep, {length.replace('_', ' ')} per job: basic {r['basic_s']:.1f} s, "
                  f"joblib {r['joblib_s']:.1f} s ({r['speedup']:.2f}x)")
        print(f"W1 peak memory: {mem['peak_rss_mb']:.0f} MB (data {mem['data_mb']:.0f} MB, "
              f"+{mem['peak_rss_mb'] - mem['data_mb']:.0f} MB)")
    if "table" in results:
        t = results["table"]
        print(f"table of {t['rows']:,} rows ({t['file_mb']:.0f} MB CSV): pandas.read_csv "
              f"{statistics.median(t['read_csv_s']):.2f} s, mlpkit load + preprocess "
              f"{statistics.median(t['mlpkit_load_s']):.2f} s ({t['load_ratio']:.2f}x, peak {t['mlpkit_load_peak_mb']:.0f} MB); "
              f"predict.py {t['predict_rows_per_s']:,.0f} rows/s ({t['predict_s']:.1f} s, peak {t['predict_peak_mb']:.0f} MB)")
    if "epochs" in results:
        e = results["epochs"]
        print(f"XOR full batch, s/epoch (median epoch): {e['s_per_epoch_200_median'] * 1e3:.2f} ms at 200 epochs, "
              f"{e['s_per_epoch_1600_median'] * 1e3:.2f} ms at 1,600 epochs ({e['ratio']:.2f}x); means "
              f"{e['s_per_epoch_200_mean'] * 1e3:.2f} and {e['s_per_epoch_1600_mean'] * 1e3:.2f} ms "
              f"({e['ratio_of_means']:.2f}x)")
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)} (pip install lightning keras)")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
