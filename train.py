"""Train one MLP (or a sweep of them with -m) from the configs in configs/.

    python train.py                                   # digits, the default MLP
    python train.py optimizer=sgd activation=tanh     # choose by config group
    python train.py -m optimizer=sgd,adam             # a sweep
    python train.py resume=<run_dir>                  # continue a run in place
"""

import os
import sys
from pathlib import Path

try:
    import mlpkit  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a checkout that was not installed: use its src/
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import hydra
from omegaconf import DictConfig

from mlpkit.cli import check_sweep_plugins, register_resolvers, rewrite_resume_argv, run
from mlpkit.config import register_schema
from mlpkit.errors import ConfigError, exit_with


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    register_schema()
    register_resolvers()
    if not sys.stderr.isatty():  # Optuna's log is coloured by colorlog, which honours NO_COLOR
        os.environ.setdefault("NO_COLOR", "1")
    try:
        check_sweep_plugins(sys.argv)
        sys.argv = rewrite_resume_argv(sys.argv)
    except ConfigError as err:
        exit_with(err)
    main()
