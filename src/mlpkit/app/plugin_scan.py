"""Hydra's plugin scan without the sweep plugins until something asks for them.

At start-up Hydra imports every module of every `hydra_plugins` package to find its plugins. The
launcher and sweeper packages (joblib, Optuna, submitit, Ray, mlpkit's own Ray cluster launcher)
only add Launcher and Sweeper classes and the `hydra/launcher/*` and `hydra/sweeper/*` configs, and
importing them costs ~0.05-0.1 s of CPU (the Ray launcher's AWS config schema most), while a single
run uses none of them. So the scan leaves those packages out, and scans them, exactly as Hydra would,
the first time anything needs them: a lookup under `hydra/launcher` or `hydra/sweeper` that the
config store cannot answer (`hydra/launcher=joblib`, `hparams_search=optuna`, `--hydra-help`'s
listing), a launcher or sweeper being instantiated (every sweep), or a question about plugins of
those kinds. Any other `hydra_plugins` package is scanned at start-up as before.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import sys
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List

# the sweep plugins' packages (what `pip install "mlpkit[sweeps]"` / `"mlpkit[ray]"` bring, and ours)
DEFERRED = frozenset({"hydra_joblib_launcher", "hydra_optuna_sweeper", "hydra_ray_launcher",
                      "hydra_submitit_launcher", "mlpkit_ray_cluster"})
CONFIG_GROUPS = ("hydra/launcher", "hydra/sweeper")  # where their configs sit in the config store
# deferred: DEFERRED was left out of the scan and not scanned since; scan: Hydra's own scanner
STATE: Dict[str, Any] = {"deferred": False, "scan": None}


def _walk(deferred: bool):
    """pkgutil.walk_packages for Hydra's scanner, keeping under `hydra_plugins.` only the DEFERRED packages
    (deferred=True) or all but them (deferred=False); other roots are walked as they are."""

    def walk_packages(path: List[str], prefix: str, onerror: Any = None) -> Iterator[Any]:
        if prefix != "hydra_plugins.":
            yield from pkgutil.walk_packages(path, prefix, onerror)
            return
        for info in pkgutil.iter_modules(path, prefix):
            if (info.name[len(prefix):] in DEFERRED) != deferred:
                continue
            yield info
            if info.ispkg:  # as walk_packages does: import the package, then walk what it holds
                try:
                    importlib.import_module(info.name)
                except ImportError:
                    if onerror is not None:
                        onerror(info.name)
                    continue
                yield from pkgutil.walk_packages(sys.modules[info.name].__path__, info.name + ".", onerror)

    return SimpleNamespace(walk_packages=walk_packages)


def _scan(original: Any, modules: List[Any], deferred: bool) -> Any:
    import hydra.core.plugins as hydra_plugins_module

    saved = hydra_plugins_module.pkgutil
    hydra_plugins_module.pkgutil = _walk(deferred)  # type: ignore[assignment]
    try:
        return original(modules)
    finally:
        hydra_plugins_module.pkgutil = saved


def scan_deferred() -> None:
    """Scan the DEFERRED packages into Hydra's plugin registry (once; nothing when none was left out)."""
    if not STATE["deferred"]:
        return
    STATE["deferred"] = False
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    try:
        root = importlib.import_module("hydra_plugins")
    except ImportError:
        return
    scanned, _ = _scan(STATE["scan"], [root], deferred=True)
    for clazz in scanned:
        plugins.register(clazz)


def _refresh(store: Any) -> None:
    """Hydra composes from a deep copy of the config store taken when the compose began: give that copy
    the launcher and sweeper configs the scan has just added to the store itself."""
    from hydra.core.config_store import ConfigStore

    live = ConfigStore.instance()
    if store is live:
        return
    for group in CONFIG_GROUPS:
        parent, name = group.rsplit("/", 1)
        source, target = live._open(group), store._open(parent)
        if source is not None and isinstance(target, dict):
            target[name] = copy.deepcopy(source)


def install_lazy_plugin_scan() -> None:
    """Patch Hydra (once per process) so that its plugin scan defers the sweep plugins (see the module)."""
    if STATE["scan"] is not None:
        return
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    STATE["scan"] = Plugins._scan_all_plugins

    def scan_all_plugins(modules: List[Any]) -> Any:
        STATE["deferred"] = True
        return _scan(STATE["scan"], modules, deferred=False)

    Plugins._scan_all_plugins = staticmethod(scan_all_plugins)  # type: ignore[method-assign]

    def needs_deferred(method: Any, on_miss: bool) -> Any:
        """A ConfigStore method that first scans the deferred plugins for a path in their groups (on_miss:
        only when the store does not hold the path yet)."""

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            path = str(args[0] if args else kwargs.get("path", kwargs.get("config_path", "")))
            if STATE["deferred"] and path.strip("/").startswith(CONFIG_GROUPS) and (
                    not on_miss or self._open(path) is None):
                scan_deferred()
                _refresh(self)
            return method(self, *args, **kwargs)

        return wrapper

    ConfigStore.get_type = needs_deferred(ConfigStore.get_type, on_miss=True)  # type: ignore[method-assign]
    ConfigStore.load = needs_deferred(ConfigStore.load, on_miss=True)  # type: ignore[method-assign]
    ConfigStore.list = needs_deferred(ConfigStore.list, on_miss=False)  # type: ignore[method-assign]

    def scanned_first(method: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            scan_deferred()
            return method(self, *args, **kwargs)

        return wrapper

    Plugins.instantiate_launcher = scanned_first(Plugins.instantiate_launcher)  # type: ignore[method-assign]
    Plugins.instantiate_sweeper = scanned_first(Plugins.instantiate_sweeper)  # type: ignore[method-assign]
    original_discover = Plugins.discover

    def discover(self: Any, plugin_type: Any = None) -> Any:
        if plugin_type is None or any(issubclass(t, plugin_type) or issubclass(plugin_type, t)
                                      for t in (Launcher, Sweeper)):  # a kind the deferred packages hold
            scan_deferred()
        return original_discover(self, plugin_type)

    Plugins.discover = discover  # type: ignore[method-assign]
