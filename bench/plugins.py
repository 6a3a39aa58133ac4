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
from difflib import get_close_matches
from typing import Any

import pluggy

from bench import hookspecs
from bench.errors import PluginError
from bench.registry import KINDS, PluginInfo, PluginSpec, Registry

LOAD, DISABLE, STRICT = "DEOCC_LOAD_PLUGINS", "DEOCC_DISABLE_PLUGINS", "DEOCC_STRICT_PLUGINS"
TRUE, FALSE = ("1", "true"), ("", "0", "false")


def _csv_env(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _strict() -> bool:
    """``DEOCC_STRICT_PLUGINS``: a plugin that fails to import or to register is fatal."""
    value = os.environ.get(STRICT, "").strip().lower()
    if value not in TRUE + FALSE:
        raise PluginError(f"{STRICT}={os.environ[STRICT]!r}: use 1 or true (strict), 0 or false (the default)")
    return value in TRUE


def _check_names(variable: str, names: list[str] | None, installed: list[str]) -> None:
    """Every entry point ``variable`` names is installed: a typo would silently load or block nothing."""
    for name in names or []:
        if name not in installed:
            hint = get_close_matches(name, installed, n=3)
            tail = f"did you mean {', '.join(hint)}?" if hint else f"installed: {', '.join(sorted(installed))}"
            raise PluginError(f"{variable}: no plugin {name!r} is installed; {tail}")


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> list[tuple[Any, Any]]:
    """(distribution, entry point) of each ``deocc_bench`` entry point, the first of each name."""
    found, seen = [], set()
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == hookspecs.PROJECT and ep.name not in seen:
                seen.add(ep.name)
                found.append((dist, ep))
    return found


def load_entry_points(pm: pluggy.PluginManager) -> tuple[list[PluginInfo], dict[str, list[str]]]:
    """Register each entry point on its own, so one broken plugin cannot take the others down. Returns the
    plugins and, per environment switch, the entry points it kept out."""
    strict = _strict()
    points = _entry_points()
    installed = [ep.name for _, ep in points]
    only, disabled = _csv_env(LOAD), _csv_env(DISABLE)
    _check_names(LOAD, only, installed)
    _check_names(DISABLE, disabled, installed)
    for blocked in disabled or []:
        pm.set_blocked(blocked)
    infos: list[PluginInfo] = []
    kept_out: dict[str, list[str]] = {LOAD: [], DISABLE: []}
    for dist, ep in points:
        if only is not None and ep.name not in only:
            kept_out[LOAD].append(ep.name)
            continue
        if pm.is_blocked(ep.name):
            kept_out[DISABLE].append(ep.name)
            continue
        info = PluginInfo(ep.name, dist.version or "?", dist.metadata["Name"] or "?")
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            if strict:
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            info.error = f"{type(exc).__name__}: {exc}"
        infos.append(info)
    return infos, kept_out


def collect(pm: pluggy.PluginManager, infos: list[PluginInfo], blocked: dict[str, list[str]] | None = None) -> Registry:
    """Call every kind's hook on every plugin; a plugin whose hook raises is reported, not fatal."""
    pm.check_pending()
    by_name = {i.name: i for i in infos}
    for plugin in pm.get_plugins():  # plugin objects registered in process (tests) have no entry point
        pname = pm.get_name(plugin) or repr(plugin)
        if pname not in by_name:
            info = PluginInfo(pname, getattr(plugin, "__version__", "-"), "(registered in process)")
            infos.append(info)
            by_name[pname] = info
    specs, conflicts = {}, {}
    for kind in KINDS:
        specs[kind], conflicts[kind] = _call_each(pm, by_name, kind)
    for info in infos:
        info.methods = [n for n, s in specs["method"].items() if s.plugin == info.name]
    return Registry(specs, infos, conflicts, blocked or {})


def _call_each(
    pm: pluggy.PluginManager, by_name: dict[str, PluginInfo], kind: str
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Call ``kind``'s hook on each plugin alone, so a failure is pinned on the plugin that raised. Returns the
    specs by name and the names two or more plugins register (unusable: dropped from the specs, each owner
    marked)."""
    hook, spec_class = KINDS[kind]
    found: dict[str, Any] = {}
    conflicts: dict[str, list[str]] = {}
    for plugin in pm.get_plugins():
        info = by_name[pm.get_name(plugin) or repr(plugin)]
        caller = pm.subset_hook_caller(hook, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])

        def register(spec: Any, _info: PluginInfo = info) -> None:
            if not isinstance(spec, PluginSpec) or spec.kind != kind:
                raise TypeError(f"register() takes a {spec_class.rpartition('.')[2]}, got {type(spec).__name__}")
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
_blocked: dict[str, list[str]] = {}


def get_manager() -> pluggy.PluginManager:
    """The process-wide manager, entry points loaded once."""
    global _pm, _infos, _blocked
    if _pm is None:
        pm = make_manager()
        _infos, _blocked = load_entry_points(pm)
        _pm = pm
    return _pm


def registry() -> Registry:
    pm = get_manager()
    return collect(pm, [PluginInfo(i.name, i.version, i.distribution, [], i.error) for i in _infos], _blocked)


def reset() -> None:
    """Forget the manager (tests)."""
    global _pm, _infos, _blocked
    _pm, _infos, _blocked = None, [], {}
