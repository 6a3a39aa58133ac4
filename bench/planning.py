"""What a run is: its configuration, validated at the edge, and the jobs it expands into.

Every value a user gives is checked here, before any work starts or any folder is created, so a bad
value is one line naming it and the fix, never a run that "completes" with nothing in it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import RunError
from bench.io import VGG_VARIABLE, check_weights_only, path_problem, refuse_inside_run
from bench.method import MethodSpec, base_name
from bench.options import PROFILES
from bench.registry import VARIANT_NAME, check_name

if TYPE_CHECKING:
    from bench.data.resolve import DataConfig
    from bench.method import Method, MethodContext
    from bench.registry import Registry

ORACLE = "gt"  # the mask source that is the ground-truth mask itself
MIN_IMAGE_SIZE = 32  # above the 11x11 SSIM window, and every network's downsampling stays >= 2x2
MAX_IMAGE_SIZE = 1024
MAX_SEED = 2**32 - 1  # numpy's seed range; torch's and Python's generators take it whole
NAME_MAX = 255  # bytes in one path component (ext4, APFS, NTFS)


def check_profile(profile: str) -> None:
    """The one check of a profile name (run, perf, list --options)."""
    if profile not in PROFILES:
        raise RunError(f"unknown profile {profile!r}; use {', '.join(PROFILES)}")


def check_image_size(flag: str, size: int) -> None:
    """The one check of an image size (--image-size, perf's --sizes)."""
    if not (MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE and size % 16 == 0):
        raise RunError(f"{flag} must be a multiple of 16 from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, got {size}")


def check_method_names(names: Sequence[str]) -> None:
    """The one check of a --methods list (run, perf): not empty, each name in the grammar, none twice."""
    if not names:
        raise RunError("--methods is empty; name at least one method (see `bench list`)")
    for name in names:
        check_name(name, "method")
    if len(set(names)) != len(names):
        raise RunError(f"--methods names a method twice: {','.join(names)}")


def _output_folder(path: Path, methods: Sequence[str]) -> None:
    """--output can hold run folders: not a file, no component too long for the file system, writable, outside
    every run folder, and none of the folders the run keeps in it (runs/, cache/, checkpoints/<method>/) a file."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX - 40:  # run folders and checkpoint files add to the names below it
            raise RunError(
                f"--output: the name {part[:40]}... is {len(os.fsencode(part))} bytes; file systems take "
                f"{NAME_MAX} per name and the run adds its own below it: use a shorter --output"
            )
    if path.exists() and not path.is_dir():
        raise RunError(f"--output {path}: is a file, not a folder; give a folder (it is created when missing)")
    problem = path_problem(path)
    if problem:
        raise RunError(f"--output {path}: {problem}; choose another --output folder")
    refuse_inside_run(path, "--output")
    for sub in ("runs", "cache", "cache/data", "checkpoints", *(f"checkpoints/{m.replace(':', '_')}" for m in methods)):
        if os.path.lexists(path / sub) and not (path / sub).is_dir():
            raise RunError(
                f"--output {path}: {path / sub} is a file, where the run keeps a folder; move it away or choose "
                "another --output folder"
            )


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
    methods: list[str] = field(default_factory=lambda: ["oagan", "pconv"])
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
    inception_weights: Path | None = None  # FID/KID's Inception file (bench.measures), else found in weights_dir
    limit: int | None = None
    occluders: Path | None = None
    batch_size: int = 16
    data_limit: int | None = None  # at most this many images per split (whole identities on CelebA)
    natural_folder: Path | None = None  # a user's own naturally occluded faces replace test_natural
    mask_parts: list[str] = field(default_factory=lambda: ["eye_g", "hat"])  # its occluders, if CelebAMask-HQ
    paired_folder: list[Path] = field(default_factory=list)  # a user's paired test sets (bench.data.paired)
    derive_mask: float | None = None  # their true masks from |input - gt| > this where no mask/ is given
    align: str = "none"  # how user folders become faces: "none" (the fixed crop) or "dlib" (bench.data.align)
    identification: bool = False  # the Fig. 12 protocol (trains a LightCNN-9 unless id_weights is given)
    id_weights: Path | None = None
    id_steps: int | None = None
    id_model: list[str] = field(default_factory=lambda: ["lightcnn9"])  # recognizers (plugins) for identification
    precision: str = "fp32"  # fp32 or bf16 autocast (bench.acceleration)
    # networks in channels-last memory format: on by default, 1.10x (oagan) and 1.15x (pconv) per training step at
    # the quick profile on a 2-core CPU (docs/speed.md); other kernels, other rounding, so it keys the checkpoints
    channels_last: bool = True
    compile: bool = False  # torch.compile the networks for inference
    allow_partial: bool = False  # CelebA: accept annotation files and images that disagree (bench.data.celeba)

    def __post_init__(self) -> None:
        for name in NAME_LISTS:  # given as the CLI's comma-separated text
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [part.strip() for part in value.split(",") if part.strip()])
        self.validate()
        if self.image_size is None:
            self.image_size = PROFILES[self.profile].size

    def validate(self) -> None:
        """Every value at the edge: one line naming the option and what it accepts."""
        check_method_names(self.methods)
        check_profile(self.profile)
        if self.image_size is not None:
            check_image_size("--image-size", self.image_size)
        if not self.mask_source:
            raise RunError(f"--mask-source is empty; use {ORACLE} or a method that predicts a mask (e.g. oagan)")
        if len(set(self.mask_source)) != len(self.mask_source):
            raise RunError(f"--mask-source names a source twice: {','.join(self.mask_source)}")
        for source in self.mask_source:
            if source != ORACLE and not VARIANT_NAME.fullmatch(source):
                raise RunError(f"--mask-source {source!r}: use {ORACLE} or the name of a method that predicts a mask")
        if not (math.isfinite(self.mask_threshold) and 0 < self.mask_threshold < 1):
            raise RunError(f"--mask-threshold must be strictly between 0 and 1, got {self.mask_threshold}")
        _positive("--seed", self.seed, 0)
        if self.seed > MAX_SEED:
            raise RunError(f"--seed must be at most {MAX_SEED} (the seed range is 0 to {MAX_SEED}), got {self.seed}")
        _positive("--steps", self.steps)
        _positive("--limit", self.limit)
        _positive("--batch-size", self.batch_size)
        _positive("--data-limit", self.data_limit)
        _positive("--id-steps", self.id_steps)
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget > 0):
            raise RunError(
                f"--time-budget is seconds of training and must be a positive, finite number, got {self.time_budget}"
                " (drop it for no cap)"
            )
        _existing("--weights-dir", self.weights_dir, "folder")
        _existing("--inception-weights", self.inception_weights, "file")
        _existing("--occluders", self.occluders, "folder")
        _existing("--natural-folder", self.natural_folder, "folder")
        self._check_paired()
        from bench.data.celebamask import ALL_PARTS

        if not self.mask_parts or not set(self.mask_parts) <= set(ALL_PARTS):
            raise RunError(
                f"--mask-parts {','.join(self.mask_parts) or '(empty)'}: name CelebAMask-HQ parts from "
                f"{', '.join(ALL_PARTS)}"
            )
        _existing("--id-weights", self.id_weights, "file")
        _output_folder(self.output, self.methods)
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
        if self.allow_partial and self.dataset == "synthetic":
            raise RunError("--allow-partial applies to a CelebA folder; the synthetic set is always complete: drop it")
        for key, value in self.options.items():
            scope, dot, name = key.rpartition(".")
            if not name or (dot and not VARIANT_NAME.fullmatch(scope)):
                raise RunError(f"--opt {key!r}: use key=value (every method) or method.key=value (one method)")
            if value == "":
                raise RunError(f"--opt {key}= has an empty value; give one ({key}=VALUE, or {key}=none) or drop it")

    @classmethod
    def from_record(cls, record: dict[str, Any], output: Path) -> RunConfig:
        """The configuration a manifest recorded (``asdict`` written as JSON: paths as strings), validated again,
        with ``output`` the run's output root (the folder may have moved since)."""
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        known = {f.name for f in fields(cls)}
        values = {k: (_as_paths(v) if k in paths else v) for k, v in record.items() if k in known}
        return cls(**(values | {"output": output}))

    def _check_paired(self) -> None:
        from bench.data.paired import split_name

        self.paired_folder = [Path(p) for p in self.paired_folder]
        names: dict[str, Path] = {}
        for folder in self.paired_folder:
            _existing("--paired-folder", folder, "folder")
            name = split_name(folder)
            if name in names:
                raise RunError(
                    f"--paired-folder {folder} and {names[name]} would both be split {name}; rename one of the folders"
                )
            names[name] = folder
        if self.derive_mask is not None and not (math.isfinite(self.derive_mask) and 0 < self.derive_mask < 1):
            raise RunError(
                f"--derive-mask is a difference in [0, 1] and must be strictly inside it, got {self.derive_mask}"
            )
        from bench.data.align import check_align

        if self.align != "none" and not (self.paired_folder or self.natural_folder):
            raise RunError(
                f"--align {self.align} aligns your folders' faces and needs --paired-folder or --natural-folder; "
                "add one or drop --align"
            )
        check_align(self.align)

    def acceleration(self):
        from bench.acceleration import Acceleration

        return Acceleration(self.precision, self.channels_last, self.compile)

    def data(self) -> DataConfig:
        """The fields that decide the run's data, as the data layer takes them."""
        from bench.data.resolve import DataConfig

        names = {f.name for f in fields(DataConfig)} - {"cache"}
        return DataConfig(**{n: getattr(self, n) for n in names}, cache=self.output / "cache" / "data")

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (the device, output folder and batch size do not)."""
        d = asdict(self)
        for key in ("device", "output", "batch_size"):
            d.pop(key)
        for key in ADDED_LATER:  # absent at their defaults, so that the runs made before keep their identity
            if d[key] == field_default(key):
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


NAME_LISTS = ("methods", "mask_source", "id_model", "mask_parts")  # RunConfig's comma-separated list fields
# fields newer than runs on disk
ADDED_LATER = ("allow_partial", "mask_parts", "paired_folder", "derive_mask", "align", "inception_weights")


def field_default(name: str) -> Any:
    """RunConfig's default for its field ``name`` (the CLI's defaults are these, never restated)."""
    spec = RunConfig.__dataclass_fields__[name]
    return spec.default if spec.default_factory is MISSING else spec.default_factory()


def _as_paths(value: str | list[str] | None) -> Path | list[Path] | None:
    """A recorded path field back as paths: one path, a list of them (--paired-folder), or None."""
    if value is None:
        return None
    return [Path(v) for v in value] if isinstance(value, list) else Path(value)


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
            if not registry.knows(source):
                hint = get_close_matches(source, [ORACLE, *masking], n=3)
                tail = f"did you mean {', '.join(hint)}?" if hint else usable
                raise RunError(f"--mask-source {source!r}: unknown method {source!r}; {tail}{registry.broken_note()}")
            provider = registry.get(source, flag=f"--mask-source {source!r}:")
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
NEEDS = {
    "id_model": "identification",
    "id_weights": "identification",
    "id_steps": "identification",
    "derive_mask": "paired_folder",
    "mask_parts": "natural_folder",
}


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


@dataclass
class Plan:
    """A run checked from names alone: the methods named, the jobs they expand into, the registry they come from."""

    named: list[MethodSpec]
    jobs: list[Job]
    registry: Registry

    @property
    def specs(self) -> list[MethodSpec]:
        """Every method the jobs run, once each, in job order."""
        return list({job.spec.name: job.spec for job in self.jobs}.values())


def plan_run(
    registry: Registry,
    methods: Sequence[str],
    *,
    profile: str = "quick",
    mask_source: Sequence[str] = (ORACLE,),
    config: RunConfig | None = None,
    given: Collection[str] = (),
) -> Plan:
    """The one planning of ``bench run`` and ``bench perf``: every name checked against ``registry`` from names
    alone (no method module nor torch is imported, so a typo is refused in well under a second). With a run's
    ``config``, also what only a run has: ``given`` names the RunConfig fields the user set, and one this run
    would ignore is refused, not dropped; option scopes; the recognizers of ``--identification``."""
    check_method_names(methods)
    check_profile(profile)
    specs = [registry.get(name) for name in methods]
    if config is not None:
        _check_given(config, specs, given)
    jobs = plan_jobs(specs, list(mask_source), registry)
    if config is not None:
        config.check_option_scopes([job.spec.name for job in jobs])
        if config.identification:
            check_recognizers(config, registry)
        check_vgg_weights_variable()
        from bench.measures import check as check_measure_files

        check_measure_files(config.weights_dir, config.inception_weights)  # LPIPS, FID/KID: each file fits its net
    return Plan(specs, jobs, registry)


def check_vgg_weights_variable() -> None:
    """``BENCH_VGG16_WEIGHTS``, when set, names a weights file that loads: checked like --id-weights before any
    folder is made, not when the first method builds its losses (imports torch only when it is set)."""
    value = os.environ.get(VGG_VARIABLE)
    if not value:
        return
    path = Path(value).expanduser()
    name = f"{VGG_VARIABLE}={value}"
    fix = f"point {VGG_VARIABLE} at a VGG-16 weights file (timm or torchvision state_dict) or unset it"
    if path.is_dir():
        raise RunError(f"{name}: is a folder, not a file; {fix}")
    if not path.is_file():
        raise RunError(f"{name}: no such file; {fix}")
    check_weights_only(path, name, fix)


def _check_given(config: RunConfig, specs: list[MethodSpec], given: Collection[str]) -> None:
    for name in sorted(given):
        need = NEEDS.get(name)
        if need and not getattr(config, need):
            raise RunError(f"{_flag(name)} needs {_flag(need)}; add {_flag(need)} or drop {_flag(name)}")
    if "mask_source" in given and not any(s.needs_mask for s in specs):
        raise RunError(
            f"--mask-source {','.join(config.mask_source)}: no method of this run takes a mask "
            f"({', '.join(config.methods)}); drop --mask-source or add a method that needs one (see `bench list`)"
        )


def check_recognizers(cfg: RunConfig, registry: Registry) -> None:
    """Every ``--id-model`` is registered and installed, and ``--id-weights`` has a recognizer that reads it."""
    specs = []
    for name in cfg.id_model:
        spec = registry.get(name, "recognizer", flag="--id-model")
        missing = spec.missing()
        if missing:
            raise RunError(f"--id-model {name} needs {', '.join(missing)}, not installed; {spec.install}")
        if spec.weights == "required" and cfg.id_weights is None:
            raise RunError(f"--id-model {name} needs a weights file; give it with --id-weights FILE")
        specs.append(spec)
    if cfg.id_weights is not None and all(s.weights == "none" for s in specs):
        raise RunError(f"--id-weights: none of --id-model {','.join(cfg.id_model)} reads a weights file; drop it")


@dataclass
class Planned:
    """A method ready to build: its spec, class and context (options resolved and validated)."""

    spec: MethodSpec
    cls: type[Method]
    ctx: MethodContext


def resolve_methods(plan: Plan, cfg: RunConfig, device: Any) -> dict[str, Planned]:
    """Every method of ``plan`` imported and its options resolved for ``cfg``: the whole run checked before any
    data is read or folder made."""
    from bench.method import make_context

    classes = {spec.name: spec.load() for spec in plan.specs}
    declared = {name: {f.name for f in fields(cls.Options)} for name, cls in classes.items()}
    cfg.check_options(list(classes), declared)
    planned = {}
    for spec in plan.specs:
        cls = classes[spec.name]
        ctx = make_context(
            cls,
            image_size=cfg.image_size,
            profile=cfg.profile,
            device=device,
            seed=cfg.seed,
            options=(spec.options, cfg.options_for(spec.name, declared[spec.name])),
            total_steps=cfg.steps,
            name=spec.name,
            weights_dir=cfg.weights_dir,
        )
        planned[spec.name] = Planned(spec, cls, ctx)
    return planned
