"""The plugin manager: finds methods through the ``deocc_bench`` entry-point group.

Built-in methods are entry points of this very distribution, declared exactly as a third-party
plugin declares them, so the harness knows no method by name. Loading never imports torch.

Environment switches (llm/datasette/tox conventions):
- ``DEOCC_LOAD_PLUGINS=a,b`` loads only those entry points ('' loads none);
- ``DEOCC_DISABLE_PLUGINS=a,b`` blocks those;
- ``DEOCC_STRICT_PLUGINS=1`` makes a plugin that fails to import fatal (default: reported and skipped).
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

import pluggy

from bench import hookspecs
from bench.identification.recognizer import RecognizerSpec
from bench.method import MethodSpec


class PluginError(RuntimeError):
    pass


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str
    methods: list[str] = field(default_factory=list)
    error: str | None = None  # set when the plugin failed to load


@dataclass
class Registry:
    methods: dict[str, MethodSpec]
    plugins: list[PluginInfo]
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # method name -> the plugins that all register it
    recognizers: dict[str, RecognizerSpec] = field(default_factory=dict)  # face recognizers (identification)
    recognizer_conflicts: dict[str, list[str]] = field(default_factory=dict)

    def recognizer(self, name: str) -> RecognizerSpec:
        if name in self.recognizers:
            return self.recognizers[name]
        if name in self.recognizer_conflicts:
            raise KeyError(
                f"recognizer {name!r} is registered by several plugins ({', '.join(self.recognizer_conflicts[name])});"
                " uninstall or block one (DEOCC_DISABLE_PLUGINS=plugin)"
            )
        hint = get_close_matches(name, list(self.recognizers), n=3)
        known = ", ".join(sorted(self.recognizers)) or "none"
        tail = f"did you mean {', '.join(hint)}?" if hint else f"available: {known}"
        raise KeyError(f"unknown recognizer {name!r}; {tail}")

    def get(self, name: str) -> MethodSpec:
        if name in self.conflicts:
            raise KeyError(
                f"method {name!r} is registered by several plugins ({', '.join(self.conflicts[name])}); uninstall or "
                "block one (DEOCC_DISABLE_PLUGINS=plugin)"
            )
        if name in self.methods:
            return self.methods[name]
        hint = get_close_matches(name, list(self.methods), n=3)
        msg = f"unknown method {name!r}"
        if hint:
            msg += f"; did you mean {', '.join(hint)}?"
        else:
            msg += f"; available: {', '.join(sorted(self.methods)) or 'none'}"
        raise KeyError(msg + self.broken_note())

    def broken_note(self) -> str:
        """`` (plugins that failed to load: a, b; see `bench list`)`` when some did: the name a user asks for
        may be one of theirs."""
        broken = [p.name for p in self.plugins if p.error]
        return f" (plugins that failed to load: {', '.join(broken)}; see `bench list`)" if broken else ""


def _csv_env(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _strict() -> bool:
    """``DEOCC_STRICT_PLUGINS``: a plugin that fails to import or to register is fatal."""
    return os.environ.get("DEOCC_STRICT_PLUGINS", "") not in ("", "0")


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Register each entry point on its own, so one broken plugin cannot take the others down."""
    strict = _strict()
    only = _csv_env("DEOCC_LOAD_PLUGINS")
    for blocked in _csv_env("DEOCC_DISABLE_PLUGINS") or []:
        pm.set_blocked(blocked)
    infos: list[PluginInfo] = []
    seen: set[str] = set()
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group != hookspecs.PROJECT or ep.name in seen:
                continue
            seen.add(ep.name)
            if only is not None and ep.name not in only:
                continue
            if pm.is_blocked(ep.name):
                continue
            info = PluginInfo(ep.name, dist.version or "?", dist.metadata["Name"] or "?")
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                if strict:
                    raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
                info.error = f"{type(exc).__name__}: {exc}"
            infos.append(info)
    return infos


def collect(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> Registry:
    """Call both hooks on every plugin; a plugin whose hook raises is reported, not fatal."""
    pm.check_pending()
    by_name = {i.name: i for i in infos}
    for plugin in pm.get_plugins():  # plugin objects registered in process (tests) have no entry point
        pname = pm.get_name(plugin) or repr(plugin)
        if pname not in by_name:
            info = PluginInfo(pname, getattr(plugin, "__version__", "-"), "(registered in process)")
            infos.append(info)
            by_name[pname] = info
    methods, conflicts = _call_each(pm, by_name, "register_methods", MethodSpec, "method")
    recognizers, twice = _call_each(pm, by_name, "register_recognizers", RecognizerSpec, "recognizer")
    return Registry(methods, infos, conflicts, recognizers, twice)


def _call_each(
    pm: pluggy.PluginManager, by_name: dict[str, PluginInfo], hook: str, spec_type: type, kind: str
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Call ``hook`` on each plugin alone, so a failure is pinned on the plugin that raised. Returns the specs
    by name and the names two or more plugins register (unusable: dropped from the specs, each owner marked)."""
    found: dict[str, Any] = {}
    conflicts: dict[str, list[str]] = {}
    for plugin in pm.get_plugins():
        info = by_name[pm.get_name(plugin) or repr(plugin)]
        caller = pm.subset_hook_caller(hook, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])

        def register(spec: Any, _info: PluginInfo = info) -> None:
            if not isinstance(spec, spec_type):
                raise TypeError(f"register() takes a {spec_type.__name__}, got {type(spec).__name__}")
            if spec.name in found:
                owners = conflicts.setdefault(spec.name, [found[spec.name].plugin])
                owners.append(_info.name)
                owners.sort()
                message = f"{kind} {spec.name!r} is registered by both {' and '.join(owners)}"
                if _strict():
                    raise PluginError(message)
                for owner in owners:
                    by_name[owner].error = f"{message}; it is unusable until one of them is removed"
                return
            object.__setattr__(spec, "plugin", _info.name)
            found[spec.name] = spec
            if kind == "method":
                _info.methods.append(spec.name)

        try:
            caller(register=register)
        except PluginError:
            raise
        except Exception as exc:
            if _strict():
                raise PluginError(
                    f"plugin {info.name!r} failed to register its {kind}s: {type(exc).__name__}: {exc}"
                ) from exc
            info.error = f"{type(exc).__name__}: {exc}"
    for name in conflicts:
        found.pop(name, None)
    return found, conflicts


_pm: pluggy.PluginManager | None = None
_infos: list[PluginInfo] = []


def get_manager() -> pluggy.PluginManager:
    """The process-wide manager, entry points loaded once."""
    global _pm, _infos
    if _pm is None:
        _pm = make_manager()
        _infos = load_entry_points(_pm)
    return _pm


def registry() -> Registry:
    pm = get_manager()
    return collect(pm, [PluginInfo(i.name, i.version, i.distribution, [], i.error) for i in _infos])


def reset() -> None:
    """Forget the manager (tests)."""
    global _pm, _infos
    _pm, _infos = None, []
