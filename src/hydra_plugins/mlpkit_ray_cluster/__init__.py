"""hydra-ray-launcher's launcher with the sweep directory made absolute before jobs are sent.

Hydra instantiates launchers only from the `hydra_plugins` package, hence this one's home. It is
imported whenever Hydra scans for plugins, so it imports nothing heavy, and nothing at all when the
`ray` extra is not installed."""

from __future__ import annotations

import os
from typing import Any

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
except ImportError:  # pip install "mlpkit[ray]"
    RayLauncher = None

if RayLauncher is not None:
    from omegaconf import open_dict, read_write

    class RayClusterLauncher(RayLauncher):
        """Jobs on a running Ray cluster (configs/hydra/launcher/ray_cluster.yaml).

        Ray runs each job in a worker whose working directory is wherever `ray start` ran, so a
        relative `hydra.sweep.dir` (mlpkit's default, outputs/multirun/...) would put the run
        directories there. Each job's config is composed again from the sweep's Hydra overrides, so
        the absolute directory is added to those."""

        def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
            sweep_dir = os.path.abspath(str(config.hydra.sweep.dir))
            quoted = "'" + sweep_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
            with read_write(config), open_dict(config):
                config.hydra.sweep.dir = sweep_dir
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir={quoted}")
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
