"""Train one MLP (or a sweep of them with -m) from the configs in configs/.

    python train.py                                   # digits, the default MLP
    python train.py optimizer=sgd activation=tanh     # choose by config group
    python train.py -m optimizer=sgd,adam             # a sweep
    python train.py resume=<run_dir>                  # continue a run in place
"""

import os
import signal
import sys

def _interrupted(signum, frame):
    raise KeyboardInterrupt


# Ctrl-C or SIGTERM during start-up (imports take seconds): one line, not a traceback
signal.signal(signal.SIGINT, _interrupted)
signal.signal(signal.SIGTERM, _interrupted)


def _main() -> None:
    from pathlib import Path

    try:
        import mlpkit  # noqa: F401  (installed with `pip install -e .`)
    except ImportError:  # a checkout that was not installed: use its src/
        sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

    from mlpkit import startup

    startup.hold()  # the collector, until start-up is done: mlpkit.startup says why
    import hydra
    from omegaconf import DictConfig

    from mlpkit.app.cli import GUARD, check_command_line, check_sweep_plugins, install_hydra_error_line, \
        install_signal_handlers, install_single_compose, register_resolvers, rewrite_resume_argv, run
    from mlpkit.app import config
    from mlpkit.app.config import register_schema
    from mlpkit.errors import ConfigError, exit_with

    @hydra.main(version_base="1.3", config_path="configs", config_name="train")
    def main(cfg: DictConfig) -> float:
        return run(cfg)

    install_signal_handlers()
    install_hydra_error_line()
    install_single_compose()
    config.CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the option lists the checks use
    register_schema()
    register_resolvers()
    if not sys.stderr.isatty():  # Optuna's log is coloured by colorlog, which honours NO_COLOR
        os.environ.setdefault("NO_COLOR", "1")
    try:
        check_sweep_plugins(sys.argv)
        sys.argv = rewrite_resume_argv(sys.argv)
        check_command_line(sys.argv[1:])
    except ConfigError as err:
        exit_with(err)
    try:
        main()
    except KeyboardInterrupt:
        GUARD.discard()
        raise


if __name__ == "__main__":
    try:
        _main()
    except KeyboardInterrupt:
        print("mlpkit: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(130)
