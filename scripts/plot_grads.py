"""Gradient norm per layer for every run of a sweep: vanishing and exploding gradients as a picture.

    python scripts/plot_grads.py outputs/multirun/<date>/<time>     # writes grad_norms.png there

One line per run: the mean L2 norm of each linear layer's weight gradient over the run's
epochs (history.grad_norm in metrics.json), layer 0 nearest the input, on a log scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import differing_keys, load_runs, newest_sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", help="a sweep directory (default: the newest under outputs/multirun)")
    args = parser.parse_args()
    sweep = Path(args.sweep) if args.sweep else newest_sweep(Path("outputs/multirun"))
    runs = [r for r in load_runs(sweep) if r["metrics"].get("history", {}).get("grad_norm")]
    if not runs:
        raise SystemExit(f"plot_grads.py: no run in {sweep} recorded gradient norms")
    keys = differing_keys(runs)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for r in runs:
        per_epoch = r["metrics"]["history"]["grad_norm"]
        means = [statistics.mean(e[i] for e in per_epoch) for i in range(len(per_epoch[0]))]
        label = " ".join(f"{k.split('.')[-1]}={r['overrides'].get(k, '-')}" for k in keys) or r["dir"].name
        ax.plot(range(len(means)), means, marker="o", label=label)
        print(f"{label:<45} " + " ".join(f"{m:.1e}" for m in means))
    ax.set_yscale("log")
    ax.set_xlabel("linear layer (0 = nearest the input)")
    ax.set_ylabel("mean weight-gradient L2 norm")
    ax.set_title(f"{sweep.parent.name} {sweep.name}: gradient norm per layer", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sweep / "grad_norms.png")
    print(f"wrote {sweep / 'grad_norms.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
