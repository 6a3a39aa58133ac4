"""Declared, typed method options (in the spirit of simonw/llm's ``Options``).

Every method declares one frozen dataclass of options; each field carries its default, a one-line help
and, where it applies, a range or a set of choices. The harness resolves it in one place, in this order:
class defaults, the preset's overrides (where a method has presets), the profile's, the registered
variant's options, then the user's ``--opt`` values. Unknown keys and ill-typed or
out-of-range values are refused with one line (and a did-you-mean). The resolved options, not the raw
strings, are what the manifest records and what keys the checkpoint cache.

Torch-free: ``bench list --options`` imports only this and the method's module.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from difflib import get_close_matches
from typing import Any, ClassVar

from bench.errors import OptionError


@dataclass(frozen=True)
class Profile:
    """A named profile. Its overrides apply over its ``base``'s, so a method (a third-party plugin too) that
    declares nothing for ``standard`` runs its ``quick`` values there, never the paper's widths."""

    base: str | None
    size: int  # the image size (px) of a run unless --image-size says otherwise


PROFILES: dict[str, Profile] = {
    "quick": Profile(base=None, size=64),
    "standard": Profile(base="quick", size=64),
    "paper": Profile(base=None, size=128),
}


def profile_chain(profile: str) -> list[str]:
    """``profile`` and its bases, base first: the order in which their overrides apply."""
    chain = [profile]
    while chain[0] in PROFILES and PROFILES[chain[0]].base:
        chain.insert(0, PROFILES[chain[0]].base)
    return chain


def for_profile(table: Mapping[str, Any], profile: str, default: Any = None) -> Any:
    """The entry of ``table`` for ``profile``, else for its nearest base, else ``default`` (e.g. steps)."""
    for name in reversed(profile_chain(profile)):
        if name in table:
            return table[name]
    return default


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    below: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """One declared option: its default, a one-line help, and optionally a range (``min``/``max`` inclusive,
    ``below`` an exclusive upper bound, e.g. Adam's betas) or a tuple of choices."""
    meta = {"help": help, "min": min, "max": max, "below": below, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Options:
    """Base of every method's options. Subclasses declare fields with :func:`option`.

    ``presets`` maps the value of a ``preset`` field to overrides of the defaults (e.g. the authors' code
    against the paper's text); ``profiles`` maps a profile name to overrides applied after the preset
    (e.g. the CPU ``quick`` widths), each over its base's (:data:`PROFILES`).
    """

    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per option: name, type, class default, range or choices, help (``bench list --options`` puts
        a profile's resolved defaults in)."""
        rows = []
        for f in fields(cls):
            meta = f.metadata
            bounds = ""
            if meta.get("choices"):
                bounds = "|".join(map(str, meta["choices"]))
            elif any(meta.get(k) is not None for k in ("min", "max", "below")):
                bounds = _span(meta)
            rows.append(
                {
                    "name": f.name,
                    "type": _type_name(_field_type(cls, f)),
                    "default": f.default,
                    "range": bounds,
                    "help": meta.get("help", ""),
                }
            )
        return rows

    @classmethod
    def resolve(cls, profile: str, *layers: Mapping[str, Any], method: str = "") -> Options:
        """Defaults, then ``presets[preset]``, then ``profiles`` along :func:`profile_chain`, then each layer of
        overrides in order (a variant's options, the user's ``--opt``); every value cast and checked."""
        who = method or cls.__qualname__
        known = {f.name: f for f in fields(cls)}
        merged: dict[str, Any] = {}
        for layer in layers:
            for key in layer:
                if key not in known:
                    raise OptionError(_unknown(who, key, list(known)))
            merged.update(layer)
        values: dict[str, Any] = {}
        if cls.presets:
            preset = _cast(who, "preset", merged.get("preset", known["preset"].default), str)
            if preset not in cls.presets:
                raise OptionError(f"{who}: option preset must be one of {', '.join(cls.presets)}, got {preset!r}")
            values.update(cls.presets[preset])
        for name in profile_chain(profile):
            values.update(cls.profiles.get(name, {}))
        values.update(merged)
        out = {}
        for key, raw in values.items():
            out[key] = _cast(who, key, raw, _field_type(cls, known[key]))
            _check(who, key, out[key], known[key].metadata)
        return cls(**out)


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints.get(f.name, type(f.default))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _unknown(who: str, key: str, known: list[str]) -> str:
    hint = get_close_matches(key, known, n=3)
    tail = f"did you mean {', '.join(hint)}?" if hint else f"see `bench list --options {who.split(':')[0]}`"
    return f"{who}: unknown option {key!r}; {tail}"


def _cast(who: str, key: str, raw: Any, tp: Any) -> Any:
    """``raw`` (a CLI string, or a value from code) as ``tp``; a bad value is one line naming the option."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("", "none")):
            return None
        tp = args[0]
    bad = OptionError(f"{who}: option {key}={raw!r} is not a valid {_type_name(tp)}")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        try:
            return int(str(raw).strip())
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(raw, bool):
            raise bad
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(value):
            raise OptionError(f"{who}: option {key}={raw!r} must be a finite number")
        return value + 0.0  # -0.0 and 0.0 are one setting (and one cache key)
    if tp is str:
        return str(raw)
    return raw


def _check(who: str, key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices and value not in choices:
        raise OptionError(f"{who}: option {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    lo, hi, below = meta.get("min"), meta.get("max"), meta.get("below")
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (below is not None and value >= below):
        raise OptionError(f"{who}: option {key}={value!r} is out of range {_span(meta)}")


def _span(meta: Mapping[str, Any]) -> str:
    """``[0.0, 1.0]``, ``[0.0, 1.0)``, ``[1, )``: the range in interval notation."""
    lo = "" if meta.get("min") is None else meta["min"]
    if meta.get("below") is not None:
        return f"[{lo}, {meta['below']})"
    hi = "" if meta.get("max") is None else meta["max"]
    return f"[{lo}, {hi}]"
