"""What a run is: its configuration, validated at the edge, and the jobs it expands into.

Every value a user gives is checked here, before any work starts or any folder is created, so a bad
value is one line naming it and the fix, never a run that "completes" with nothing in it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.method import METHOD_NAME, MethodSpec, base_name
from bench.options import PROFILES

if TYPE_CHECKING:
    from bench.plugins import Registry

ORACLE = "gt"  # the mask source that is the ground-truth mask itself
MIN_IMAGE_SIZE = 32  # above the 11x11 SSIM window, and every network's downsampling stays >= 2x2
MAX_IMAGE_SIZE = 1024


class RunError(RuntimeError):
    """A problem the user can fix; the message says how."""


def check_profile(profile: str) -> None:
    """The one check of a profile name (run, perf, list --options)."""
    if profile not in PROFILES:
        raise RunError(f"unknown profile {profile!r}; use {', '.join(PROFILES)}")


def _positive(name: str, value: int | float | None, minimum: float = 1) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RunError(f"{name} must be a finite number, got {value}")
    if value < minimum:
        raise RunError(f"{name} must be at least {minimum:g}, got {value}")


def _existing(name: str, path: Path | None, kind: str) -> None:
    if path is None:
        return
    ok = path.is_dir() if kind == "folder" else path.is_file()
    if not ok:
        raise RunError(f"{name} {path}: no such {kind}; give an existing {kind}")


@dataclass
class RunConfig:
    methods: list[str]
    dataset: str = "synthetic"
    profile: str = "quick"
    image_size: int | None = None
    mask_source: list[str] = field(default_factory=lambda: ["oagan"])  # "gt" or methods that predict a mask
    mask_threshold: float = 0.5
    device: str = "auto"
    seed: int = 0
    output: Path = Path("results")
    steps: int | None = None
    time_budget: float | None = None
    options: dict[str, str] = field(default_factory=dict)  # "key" for all methods, "method.key" for one
    weights_dir: Path | None = None
    limit: int | None = None
    occluders: Path | None = None
    batch_size: int = 16
    data_limit: int | None = None  # at most this many images per split (whole identities on CelebA)
    natural_folder: Path | None = None  # a user's own naturally occluded faces replace test_natural
    identification: bool = False  # the Fig. 12 protocol (trains a LightCNN-9 unless id_weights is given)
    id_weights: Path | None = None
    id_steps: int | None = None
    id_model: list[str] = field(default_factory=lambda: ["lightcnn9"])  # recognizers (plugins) for identification
    precision: str = "fp32"  # fp32 or bf16 autocast (bench.acceleration)
    channels_last: bool = False  # networks in channels-last memory format
    compile: bool = False  # torch.compile the networks for inference

    def __post_init__(self) -> None:
        if isinstance(self.mask_source, str):
            self.mask_source = [s.strip() for s in self.mask_source.split(",") if s.strip()]
        if isinstance(self.id_model, str):
            self.id_model = [s.strip() for s in self.id_model.split(",") if s.strip()]
        self.validate()
        if self.image_size is None:
            self.image_size = PROFILES[self.profile].size

    def validate(self) -> None:
        """Every value at the edge: one line naming the option and what it accepts."""
        if not self.methods:
            raise RunError("--methods is empty; name at least one method (see `bench list`)")
        for name in self.methods:
            if not METHOD_NAME.fullmatch(name):
                raise RunError(
                    f"method name {name!r} is not valid: 'name' or 'name:variant' in lowercase letters, digits, '_'"
                )
        if len(set(self.methods)) != len(self.methods):
            raise RunError(f"--methods names a method twice: {','.join(self.methods)}")
        check_profile(self.profile)
        if self.image_size is not None and not (
            MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE and self.image_size % 16 == 0
        ):
            span = f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}"
            raise RunError(f"--image-size must be a multiple of 16 from {span}, got {self.image_size}")
        if not self.mask_source:
            raise RunError(f"--mask-source is empty; use {ORACLE} or a method that predicts a mask (e.g. oagan)")
        if len(set(self.mask_source)) != len(self.mask_source):
            raise RunError(f"--mask-source names a source twice: {','.join(self.mask_source)}")
        for source in self.mask_source:
            if source != ORACLE and not METHOD_NAME.fullmatch(source):
                raise RunError(f"--mask-source {source!r}: use {ORACLE} or the name of a method that predicts a mask")
        if not (math.isfinite(self.mask_threshold) and 0 < self.mask_threshold < 1):
            raise RunError(f"--mask-threshold must be strictly between 0 and 1, got {self.mask_threshold}")
        _positive("--seed", self.seed, 0)
        _positive("--steps", self.steps, 0)
        _positive("--limit", self.limit)
        _positive("--batch-size", self.batch_size)
        _positive("--data-limit", self.data_limit)
        _positive("--id-steps", self.id_steps)
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget > 0):
            raise RunError(f"--time-budget is seconds of training and must be positive, got {self.time_budget}")
        _existing("--weights-dir", self.weights_dir, "folder")
        _existing("--occluders", self.occluders, "folder")
        _existing("--natural-folder", self.natural_folder, "folder")
        _existing("--id-weights", self.id_weights, "file")
        try:
            self.acceleration()
        except ValueError as exc:
            raise RunError(str(exc)) from exc
        if not self.id_model:
            raise RunError("--id-model is empty; name a recognizer (e.g. lightcnn9 or dlib)")
        if len(set(self.id_model)) != len(self.id_model):
            raise RunError(f"--id-model names a recognizer twice: {','.join(self.id_model)}")
        if self.dataset != "synthetic":
            root = Path(self.dataset.removeprefix("celeba:")).expanduser()
            if not root.is_dir():
                raise RunError(
                    f"dataset {self.dataset!r}: folder {root} does not exist; use 'synthetic' or a CelebA folder"
                )
        for key in self.options:
            scope, dot, name = key.rpartition(".")
            if not name or (dot and not METHOD_NAME.fullmatch(scope)):
                raise RunError(f"--opt {key!r}: use key=value (every method) or method.key=value (one method)")

    def acceleration(self):
        from bench.acceleration import Acceleration

        return Acceleration(self.precision, self.channels_last, self.compile)

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (the device, output folder and batch size do not)."""
        d = asdict(self)
        for key in ("device", "output", "batch_size"):
            d.pop(key)
        return d

    def options_for(self, name: str, declared: set[str]) -> dict[str, str]:
        """The user's ``--opt`` values for ``name``: unscoped ones it declares (``--opt lr=1e-3`` reaches
        every method that has an ``lr``), then ``base.key``, then ``name.key`` (which must be declared)."""
        out = {k: v for k, v in self.options.items() if "." not in k and k in declared}
        for scope in (base_name(name), name):
            for k, v in self.options.items():
                s, dot, key = k.rpartition(".")
                if dot and s == scope:
                    out[key] = v
        return out

    def check_option_scopes(self, names: list[str]) -> None:
        """A ``method.key`` for a method not in the run is a typo, not a no-op (names alone: no import)."""
        bases = {base_name(n) for n in names} | set(names)
        for k in self.options:
            scope, dot, _ = k.rpartition(".")
            if dot and scope not in bases:
                raise RunError(f"--opt {k}: {scope!r} is not one of the run's methods ({', '.join(sorted(bases))})")

    def check_options(self, names: list[str], declared: dict[str, set[str]]) -> None:
        """A ``method.key`` for a method not in the run, or an unscoped key no method of the run declares, is
        a typo, not a no-op."""
        self.check_option_scopes(names)
        every = set().union(*declared.values()) if declared else set()
        for k in self.options:
            scope, dot, key = k.rpartition(".")
            if not dot and key not in every:
                hint = get_close_matches(key, sorted(every), n=3)
                tail = f"did you mean {', '.join(hint)}?" if hint else "see `bench list --options`"
                raise RunError(f"--opt {k}: no method of this run has an option {key!r}; {tail}")


@dataclass
class Job:
    """One evaluated row group: a method under one mask protocol."""

    spec: MethodSpec
    mask_source: str  # "own" (mask-free methods), "gt" (oracle) or the name of the method whose masks it is fed

    @property
    def label(self) -> str:
        return self.spec.name if self.mask_source == "own" else f"{self.spec.name}@{self.mask_source}"


def plan_jobs(specs: list[MethodSpec], mask_sources: list[str], registry: Registry) -> list[Job]:
    """Expand methods into jobs. A mask source that is a method runs first (it is added when the run does not
    name it but a mask-requiring method is fed its masks); the other methods keep their order; every reference
    method (``MethodSpec.reference``: the input itself, the floor) the run does not name comes last, so each
    result is scored beside its input. Without a registered reference the run goes on without one."""
    providers: list[MethodSpec] = []
    if any(s.needs_mask for s in specs):
        masking = [n for n, s in sorted(registry.methods.items()) if s.predicts_mask and not s.needs_mask]
        usable = f"use {ORACLE} or one of {', '.join(masking) or 'none installed'}"
        for source in mask_sources:
            if source == ORACLE:
                continue
            if source not in registry.methods and source not in registry.conflicts:
                hint = get_close_matches(source, [ORACLE, *masking], n=3)
                tail = f"did you mean {', '.join(hint)}?" if hint else usable
                raise RunError(f"--mask-source {source!r}: unknown method {source!r}; {tail}{registry.broken_note()}")
            try:
                provider = registry.get(source)
            except KeyError as exc:
                raise RunError(f"--mask-source {source!r}: {exc.args[0]}") from exc
            if not provider.predicts_mask or provider.needs_mask:
                raise RunError(f"--mask-source {source!r}: that method predicts no mask of its own; {usable}")
            providers.append(provider)
    ordered = providers + [s for s in specs if s not in providers]
    named = {s.name for s in ordered}
    ordered += [s for _, s in sorted(registry.methods.items()) if s.reference and s.name not in named]
    jobs = []
    for spec in ordered:
        if spec.needs_mask:
            jobs += [Job(spec, source) for source in mask_sources]
        else:
            jobs.append(Job(spec, "own"))
    return jobs


# An option that means something only beside another (RunConfig field -> the field it needs): given alone, the
# run would silently ignore it.
NEEDS = {"id_model": "identification", "id_weights": "identification", "id_steps": "identification"}


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def plan(config: RunConfig, registry: Registry, given: Collection[str] = ()) -> list[Job]:
    """The run's jobs, every name checked against ``registry`` from names alone: no method module (nor torch)
    is imported, so the CLI refuses a typo in well under a second, before any expensive import. ``given``
    names the RunConfig fields the user set; one that this run would ignore is refused, not dropped."""
    try:
        specs = [registry.get(name) for name in config.methods]
    except KeyError as exc:
        raise RunError(exc.args[0]) from exc
    for name in sorted(given):
        need = NEEDS.get(name)
        if need and not getattr(config, need):
            raise RunError(f"{_flag(name)} needs {_flag(need)}; add {_flag(need)} or drop {_flag(name)}")
    if "mask_source" in given and not any(s.needs_mask for s in specs):
        raise RunError(
            f"--mask-source {','.join(config.mask_source)}: no method of this run takes a mask "
            f"({', '.join(config.methods)}); drop --mask-source or add a method that needs one (see `bench list`)"
        )
    jobs = plan_jobs(specs, config.mask_source, registry)
    config.check_option_scopes([job.spec.name for job in jobs])
    return jobs
