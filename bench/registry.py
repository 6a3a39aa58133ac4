"""What every kind of plugin shares: one name grammar, one spec base, one registry with one lookup.

A kind (``method``, ``recognizer``) is a hook of :mod:`bench.hookspecs` and a :class:`PluginSpec` subclass; the
registry holds the specs of each kind by name, the names two plugins both register (unusable until one is
removed) and the plugins found. Looking a name up gives its spec, or one line: the conflict naming both plugins,
or an unknown name with a did-you-mean, the plugins that failed to load and the environment switches that
blocked some. Torch-free and feature-free: nothing here imports a method or a recognizer.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, ClassVar

from bench.errors import InvalidName, PluginError

# The one grammar of plugin names: ``name``, or for methods ``name:variant``; lowercase letters, digits and ``_``,
# starting with a letter. Names become folder and file names, so nothing else is allowed.
NAME = r"[a-z][a-z0-9_]*"
VARIANT_NAME = re.compile(rf"{NAME}(?::{NAME})?")
PLAIN_NAME = re.compile(NAME)
# Each kind of plugin: the hook that registers it and the spec class it registers (named, never imported here).
KINDS: dict[str, tuple[str, str]] = {
    "method": ("register_methods", "bench.method.MethodSpec"),
    "recognizer": ("register_recognizers", "bench.identification.recognizer.RecognizerSpec"),
}


def check_name(name: Any, kind: str = "method", variants: bool = True) -> str:
    """``name`` when it follows the grammar, else one line saying what the grammar is."""
    grammar = VARIANT_NAME if variants else PLAIN_NAME
    if not isinstance(name, str) or not grammar.fullmatch(name):
        form = "'name' or 'name:variant'" if variants else "'name'"
        raise InvalidName(
            f"{kind} name {name!r} is not valid: use {form} made of lowercase letters, digits and '_', "
            "starting with a letter"
        )
    return name


class PluginSpec:
    """Base of every registered spec (a frozen dataclass with ``name``, ``factory`` and ``plugin`` fields):
    cheap to build, nothing imported until :meth:`load`."""

    kind: ClassVar[str]

    def load(self) -> Any:
        """The class ``factory`` ("package.module:Class") names; one line when it cannot be imported."""
        module, _, attr = self.factory.partition(":")  # type: ignore[attr-defined]
        try:
            return getattr(importlib.import_module(module), attr)
        except Exception as exc:
            raise PluginError(
                f"{self.kind} {self.name!r} (plugin {self.plugin!r}): cannot load {self.factory}: "  # type: ignore[attr-defined]
                f"{type(exc).__name__}: {exc}"
            ) from exc


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str
    methods: list[str] = field(default_factory=list)
    error: str | None = None  # set when the plugin failed to load


@dataclass
class Registry:
    """Every registered spec by kind and name (``specs[kind][name]``), the plugins found, the names several plugins
    register (``conflicts[kind][name]``: their owners) and the entry points the environment kept out."""

    specs: dict[str, dict[str, Any]]
    plugins: list[PluginInfo]
    conflicts: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    blocked: dict[str, list[str]] = field(default_factory=dict)  # environment variable -> entry points it kept out

    @property
    def methods(self) -> dict[str, Any]:
        return self.specs.get("method", {})

    @property
    def recognizers(self) -> dict[str, Any]:
        return self.specs.get("recognizer", {})

    def knows(self, name: str, kind: str = "method") -> bool:
        """Whether ``name`` is registered (usable or in conflict)."""
        return name in self.specs.get(kind, {}) or name in self.conflicts.get(kind, {})

    def get(self, name: str, kind: str = "method", flag: str = "") -> Any:
        """The spec of ``name``, or a :class:`PluginError` whose one line starts with ``flag`` (the option that
        named it) when given."""
        lead = f"{flag} " if flag else ""
        owners = self.conflicts.get(kind, {}).get(name)
        if owners:
            raise PluginError(
                f"{lead}{kind} {name!r} is registered by several plugins ({', '.join(owners)}); uninstall or block "
                "one (DEOCC_DISABLE_PLUGINS=plugin)"
            )
        known = self.specs.get(kind, {})
        if name in known:
            return known[name]
        hint = get_close_matches(name, list(known), n=3)
        tail = f"did you mean {', '.join(hint)}?" if hint else f"available: {', '.join(sorted(known)) or 'none'}"
        raise PluginError(f"{lead}unknown {kind} {name!r}; {tail}{self.broken_note()}")

    def broken_note(self) -> str:
        """Why a name may be missing: the plugins that failed to load and those the environment kept out."""
        notes = []
        broken = [p.name for p in self.plugins if p.error]
        if broken:
            notes.append(f"plugins that failed to load: {', '.join(broken)}; see `bench list`")
        for variable, names in self.blocked.items():
            if names:
                notes.append(f"{variable}={os.environ.get(variable, '')} keeps out plugin(s) {', '.join(names)}")
        return f" ({'; '.join(notes)})" if notes else ""
