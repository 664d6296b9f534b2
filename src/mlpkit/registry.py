"""Name -> builder registries, one per choice a user makes (data set, activation, initialiser, norm,
optimiser, scheduler, pruning): what each name builds, the settings each option takes, and the one
message for a name that is not known.

    NORMS = Registry("norm", {"none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm})
    NORMS["group"]  # ConfigError: norm='group' is not known; choose one of: batch, layer, none
"""

from __future__ import annotations

import difflib
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, TypeVar

from mlpkit.errors import ConfigError, reject_unknown_settings

T = TypeVar("T")


def not_known(key: str, value: object, allowed: Iterable[str], why: str = "") -> str:
    """The one message for a value outside a fixed set, with the nearest name when one is close:
    `key='value' is not known<why>; choose one of: a, b, c (did you mean b?)`."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.75) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{key}={value!r} is not known{why}; choose one of: {', '.join(allowed)}{hint}"


def check_choice(key: str, value: object, allowed: Iterable[str]) -> None:
    """ConfigError with `not_known`'s message unless `value` is one of `allowed`."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(not_known(key, value, allowed))


class UnknownOption(ConfigError, KeyError):
    """A name a registry does not hold: a ConfigError for the user, a KeyError for `in` and `.get()`."""

    __str__ = ConfigError.__str__  # the message as it is (KeyError would quote it)


class Registry(Mapping[str, T]):
    """The options of one config group: name -> what it builds, and the settings each option takes.

    Args:
        group: the config group (`optimizer`), which names the keys in messages (`optimizer.momentum`).
        options: name -> builder (a class, a function, a spec object; None for "nothing to build").
        settings: name -> the keys of `group.*` that option takes (an option not listed takes none).
    """

    def __init__(self, group: str, options: Dict[str, T], settings: Optional[Dict[str, Sequence[str]]] = None):
        self.group = group
        self._options = dict(options)
        self._settings = {name: tuple(keys) for name, keys in (settings or {}).items()}
        unknown = set(self._settings) - set(self._options)
        assert not unknown, f"{group}: settings for options that do not exist: {sorted(unknown)}"

    def __getitem__(self, name: str) -> T:
        try:
            return self._options[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a config (a list)
            raise UnknownOption(not_known(self.group, name, self._options)) from None

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._options
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def __repr__(self) -> str:
        return f"Registry({self.group!r}, {list(self._options)})"

    def names(self) -> List[str]:
        """The option names, in registration order."""
        return list(self._options)

    def settings(self, name: str) -> tuple:
        """The keys `group=name` takes (without the group prefix)."""
        self[name]  # an unknown name is an error, not an option without settings
        return self._settings.get(name, ())

    def check_settings(self, name: str, given: Iterable[str]) -> None:
        """ConfigError naming the first of `given` that `group=name` does not take, and what it takes."""
        reject_unknown_settings(self.group, name, given, self.settings(name))
