"""The default run against scikit-learn's MLPClassifier on the same digits split.

    python scripts/baseline.py --seeds 0 1 2

For each seed: `python train.py seed=<s>` (wall time and test accuracy from its
metrics.json) and MLPClassifier(random_state=<s>) on the identical split
(mlpkit.data.load_dataset with that seed), then a table and the means.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mlpkit_run(seed: int, workdir: Path) -> tuple[float, float, int]:
    """(test accuracy, wall seconds of the whole command, epochs) of the default run."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), f"seed={seed}", "trainer.progress=false"],
                   cwd=workdir, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    metrics = max(workdir.glob("outputs/runs/*/*/metrics.json"), key=lambda p: p.stat().st_mtime)
    m = json.loads(metrics.read_text())
    return m["test"]["accuracy"], wall, m["epochs_run"]


def sklearn_run(seed: int) -> tuple[float, float]:
    from sklearn.neural_network import MLPClassifier

    from mlpkit.data import load_dataset

    d = load_dataset("digits", seed=seed)
    start = time.perf_counter()
    clf = MLPClassifier(random_state=seed, max_iter=1000).fit(d.X_train.numpy(), d.y_train.numpy())
    return clf.score(d.X_test.numpy(), d.y_test.numpy()), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            acc, wall, epochs = mlpkit_run(seed, Path(tmp))
            sk_acc, sk_time = sklearn_run(seed)
            rows.append((seed, acc, wall, epochs, sk_acc, sk_time))
    print("seed  mlpkit test acc  wall s (whole command)  epochs  sklearn MLPClassifier acc  sklearn fit s")
    for seed, acc, wall, epochs, sk_acc, sk_time in rows:
        print(f"{seed:>4}  {acc:>15.4f}  {wall:>22.1f}  {epochs:>6}  {sk_acc:>25.4f}  {sk_time:>13.2f}")
    print(f"mean  {statistics.mean(r[1] for r in rows):>15.4f}  {statistics.mean(r[2] for r in rows):>22.1f}"
          f"  {'':>6}  {statistics.mean(r[4] for r in rows):>25.4f}  {statistics.mean(r[5] for r in rows):>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
