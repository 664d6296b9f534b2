"""Compare the runs of a sweep: a table sorted by best val loss, and one chart of their val-loss curves.

    python scripts/compare.py                      # the newest sweep under outputs/multirun
    python scripts/compare.py outputs/multirun/2026-11-20/12-00-00

Prints the table and writes comparison.md and comparison.png into the sweep directory.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml


def newest_sweep(root: Path) -> Path:
    """The most recent outputs/multirun/<date>/<time> directory."""
    sweeps = [p for p in root.glob("*/*") if p.is_dir()]
    if not sweeps:
        raise SystemExit(f"compare.py: no sweeps under {root}; run `python train.py -m ...` first")
    return max(sweeps, key=lambda p: (p.parent.name, p.name))


def load_runs(sweep: Path) -> List[Dict]:
    """One dict per job directory that has a metrics.json."""
    runs = []
    for metrics_path in sorted(sweep.glob("*/metrics.json")):
        job = metrics_path.parent
        overrides_path = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
        pairs = dict(o.split("=", 1) for o in overrides if "=" in o)
        runs.append({"dir": job, "overrides": pairs, "metrics": json.loads(metrics_path.read_text())})
    return runs


def differing_keys(runs: List[Dict]) -> List[str]:
    """The override keys whose values are not the same in every run."""
    keys = sorted({k for r in runs for k in r["overrides"]})
    return [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]


def _num(value: Optional[float], digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if "." in value or "e" in value.lower() else value


def table(runs: List[Dict], keys: List[str]) -> List[List[str]]:
    """Rows of the comparison, sorted by best val loss (runs without one last)."""
    def sort_key(r):
        v = r["metrics"].get("best_val_loss")
        return (v is None or not math.isfinite(v), v if v is not None else 0.0)

    test_keys = sorted({k for r in runs for k, v in (r["metrics"].get("test") or {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)} - {"loss"})
    header = ["run", "what differs", "status", "best val loss", "test loss",
              *[f"test {k}" for k in test_keys], "epochs", "seconds"]
    rows = [header]
    for r in sorted(runs, key=sort_key):
        m = r["metrics"]
        test = m.get("test") or {}
        differs = " ".join(f"{k}={_short(r['overrides'].get(k, '-'))}" for k in keys) or "-"
        rows.append([r["dir"].name.split("_", 1)[0], differs, m.get("status", "?"),
                     _num(m.get("best_val_loss")), _num(test.get("loss")),
                     *[_num(test.get(k)) for k in test_keys], str(m.get("epochs_run", "-")),
                     _num(m.get("seconds"), 1)])
    return rows


def format_text(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def plot(runs: List[Dict], keys: List[str], path: Path, title: str) -> None:
    """Val-loss curves of every run on one chart, the legend beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    cmap = plt.get_cmap("tab20" if len(runs) > 10 else "tab10")
    ordered = sorted(runs, key=lambda r: (r["metrics"].get("best_val_loss") is None,
                                          r["metrics"].get("best_val_loss") or 0.0))
    for i, r in enumerate(ordered):
        val = [v for v in r["metrics"].get("history", {}).get("val_loss", [])]
        if not val:
            continue
        label = " ".join(f"{k.split('.')[-1]}={_short(r['overrides'].get(k, '-'))}" for k in keys) or r["dir"].name
        status = r["metrics"].get("status")
        if status not in ("completed", "early_stopped"):
            label += f" [{status}]"
        epochs = range(1, len(val) + 1)
        ax.plot(epochs, [v if v is not None else float("nan") for v in val], label=label,
                color=cmap(i % cmap.N), linewidth=1.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", help="a sweep directory (default: the newest under --outputs)")
    parser.add_argument("--outputs", default="outputs/multirun", help="where sweeps are (default: %(default)s)")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep) if args.sweep else newest_sweep(Path(args.outputs))
    if not sweep.is_dir():
        raise SystemExit(f"compare.py: {sweep} is not a directory")
    runs = load_runs(sweep)
    if not runs:
        raise SystemExit(f"compare.py: no run with a metrics.json in {sweep}")
    keys = differing_keys(runs)
    rows = table(runs, keys)
    print(f"{sweep}: {len(runs)} runs, sorted by best val loss\n")
    print(format_text(rows))
    (sweep / "comparison.md").write_text(f"# {sweep}\n\n{format_markdown(rows)}\n")
    plot(runs, keys, sweep / "comparison.png", f"{sweep.parent.name} {sweep.name}: validation loss per epoch")
    print(f"\nwrote {sweep / 'comparison.md'} and {sweep / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
