"""What pruning saved: epochs, time and best val loss of one or more sweeps, side by side.

    python scripts/prune_report.py outputs/multirun/2026-11-22/14-30-00 outputs/multirun/2026-11-22/14-35-00

One row per sweep directory, from its jobs' metrics.json: jobs, how many were pruned, total epochs
trained (sum of epochs_run), the jobs' own seconds (sum), the sweep's span (first job's start to the
last metrics.json), and the best run (lowest best val loss). The first sweep is the reference
for the "epochs" percentage.

    python scripts/prune_report.py --replay outputs/multirun/2026-11-22/14-30-00

replays `pruning=median` on a sweep that ran without it: the jobs in job-number order (as the basic
launcher and a one-at-a-time Optuna search run them), each stopped where the rule would have stopped
it, from the curves in their metrics.json. Same jobs, so it shows whether pruning would have kept
the best run, without the search taking another path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

try:
    from mlpkit.training.pruning import median_rule
    from mlpkit.status import RunStatus
except ImportError:  # a checkout that was not installed: use its src/
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from mlpkit.training.pruning import median_rule
    from mlpkit.status import RunStatus


def summarize(sweep: Path) -> Dict:
    """Totals over the jobs of one sweep directory."""
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    if not jobs:
        raise SystemExit(f"prune_report: no job with a metrics.json in {sweep}")
    metrics = {job: json.loads((job / "metrics.json").read_text()) for job in jobs}
    starts = [(job / ".hydra" / "config.yaml").stat().st_mtime for job in jobs if (job / ".hydra").is_dir()]
    ends = [(job / "metrics.json").stat().st_mtime for job in jobs]
    ranked = [j for j in jobs if metrics[j].get("best_val_loss") is not None]
    best = min(ranked, key=lambda j: metrics[j]["best_val_loss"]) if ranked else None
    return {"sweep": str(sweep), "jobs": len(jobs),
            "pruned": sum(m.get("status") == "pruned" for m in metrics.values()),
            "epochs": sum(int(m.get("epochs_run") or 0) for m in metrics.values()),
            "job_seconds": sum(float(m.get("seconds") or 0.0) for m in metrics.values()),
            "span_seconds": max(ends) - min(starts) if starts else None,
            "best_val_loss": metrics[best]["best_val_loss"] if best else None,
            "best_run": best.name if best else None}


def job_number(job: Path) -> int:
    head = job.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 10**9


def replay(sweep: Path, warmup_epochs: int = 5, min_completed: int = 3) -> Dict:
    """The sweep's totals had `pruning=median` stopped its jobs (run one after another in job order)."""
    jobs = sorted((p.parent for p in sweep.glob("*/metrics.json")), key=job_number)
    finished: List[List[Optional[float]]] = []
    epochs, pruned, best, best_run = 0, 0, None, None
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        curve = list(m.get("history", {}).get("val_loss") or [])
        stop = next((e for e in range(1, len(curve) + 1)
                     if median_rule(e, curve, finished, warmup_epochs, min_completed) is not None), None)
        if stop is not None:
            curve, pruned = curve[:stop], pruned + 1
        elif m.get("status") in RunStatus.endings() and RunStatus(m["status"]).comparable:
            finished.append(curve)
        epochs += len(curve)
        values = [v for v in curve if v is not None]
        if values and (best is None or min(values) < best):
            best, best_run = min(values), job.name
    return {"sweep": f"{sweep} (replayed with pruning=median)", "jobs": len(jobs), "pruned": pruned,
            "epochs": epochs, "job_seconds": None, "span_seconds": None, "best_val_loss": best,
            "best_run": best_run}


def table(rows: List[Dict]) -> str:
    """A Markdown table; epochs also as a percentage of the first sweep's."""
    ref: Optional[int] = rows[0]["epochs"] if rows else None
    lines = ["| sweep | jobs | pruned | epochs | epochs vs first | job seconds | span seconds | best val loss | best run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        pct = f"{100 * (r['epochs'] - ref) / ref:+.0f}%" if ref else "-"
        span = f"{r['span_seconds']:.0f}" if r["span_seconds"] is not None else "-"
        seconds = f"{r['job_seconds']:.0f}" if r["job_seconds"] is not None else "-"
        best = f"{r['best_val_loss']:.4f}" if r["best_val_loss"] is not None else "-"
        lines.append(f"| {r['sweep']} | {r['jobs']} | {r['pruned']} | {r['epochs']} | {pct} | "
                     f"{seconds} | {span} | {best} | {r['best_run']} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (outputs/multirun/<date>/<time>)")
    parser.add_argument("--replay", action="store_true",
                        help="add, for each sweep, the row it would have had with pruning=median")
    parser.add_argument("--warmup-epochs", type=int, default=5, help="pruning.warmup_epochs of the replay")
    parser.add_argument("--min-completed", type=int, default=3, help="pruning.min_completed of the replay")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    rows = []
    for sweep in args.sweeps:
        rows.append(summarize(sweep))
        if args.replay:
            rows.append(replay(sweep, args.warmup_epochs, args.min_completed))
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
