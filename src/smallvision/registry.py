"""A tiny name -> factory registry (one per kind: datasets, models, optimisers, ...).

Shape borrowed from timm's ``register_model``/``create_model``: a dict, a ``register``
decorator, ``get`` and ``names``. Duplicate names raise; unknown names are answered with
close matches so a typo is a one-line fix.

Plugins: an entry is one decorated function in any module of its package; the package's
``__init__`` imports every module it holds (`import_all`), so a new file is picked up with no
other edit. An entry declares its contract as keyword arguments of ``register`` (a model's
minimum input size, a data set's tiny fixture, whether a schedule decays, ...), typed by its
registry's frozen `Contract` dataclass (an unknown key fails at import, a missing one takes the
field's default); the generated conformance suite (tests/test_conformance.py) checks every entry
against it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from smallvision.errors import UsageError

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Contract:
    """What an entry promises beyond its signature: each registry's subclass lists the fields."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    fn: T
    description: str
    contract: Any = field(default_factory=Contract)  # the registry's Contract; the conformance suite checks it


_BY_KIND: dict[str, tuple[Registry[Any], str]] = {}  # kind -> (registry, the package whose import fills it)


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str = "", contract: type[Contract] = Contract) -> None:
        self.kind = kind
        self.contract_type = contract
        self._entries: dict[str, Entry[T]] = {}
        _BY_KIND[kind] = (self, package)

    def register(self, name: str, description: str = "", **contract: Any) -> Callable[[T], T]:
        def deco(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"duplicate {self.kind} name {name!r}")
            desc = description or (fn.__doc__ or "").strip().split("\n")[0]
            try:
                promised = self.contract_type(**contract)
            except TypeError as e:  # an unknown or missing contract key: the plugin's author sees it at import
                known = ", ".join(f.name for f in dataclasses.fields(self.contract_type)) or "none"
                raise TypeError(f"{self.kind} {name!r}: {e} (the contract's fields: {known})") from None
            self._entries[name] = Entry(name, fn, desc, promised)
            return fn

        return deco

    def get(self, name: str) -> T:
        return self.entry(name).fn

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return f"unknown {kind} {name!r}{hint}"


def registry_of(kind: str) -> Registry[Any]:
    """The registry of a kind ("model", "data set", ...), its package imported so it is full."""
    packages = {"model": "smallvision.models", "data set": "smallvision.data", "optimizer": "smallvision.optim",
                "scheduler": "smallvision.optim", "augmentation": "smallvision.data.augment",
                "generative model": "smallvision.generative.nets", "GAN loss": "smallvision.generative.losses", "OOD detector": "smallvision.ood"}
    importlib.import_module(packages[kind])
    return _BY_KIND[kind][0]


def import_all(package: str, path: list[str]) -> list[str]:
    """Import every module of a package (call from its ``__init__``): registration always runs,
    and a plugin is one new file. Returns the module names, sorted."""
    names = sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
