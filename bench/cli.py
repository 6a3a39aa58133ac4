"""The ``bench`` command line. Heavy imports (torch, timm) happen inside commands, never at import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from bench.errors import BenchError
from bench.planning import NAME_LISTS, RunConfig, check_profile, field_default, plan_run

if TYPE_CHECKING:
    from rich.text import Text

    from bench.report import Report

MARKUP = "rich"  # help text is rich markup: user and plugin text in it is escaped (``[face]`` must stay visible)
app = typer.Typer(
    help="Face de-occlusion benchmark: train and evaluate OA-GAN and baselines under one protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
)
data_app = typer.Typer(help="Look at the data.", no_args_is_help=True, rich_markup_mode=MARKUP)
app.add_typer(data_app, name="data")
study_app = typer.Typer(
    help="The user study of the paper's Fig. 11: export blinded forms, tally answers.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
app.add_typer(study_app, name="study")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _parse_options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--opt expects key=value or method.key=value, got {pair!r}")
        if key.strip() in out:
            _fail(f"--opt {key.strip()} is given twice ({out[key.strip()]!r} and {value.strip()!r}); keep one")
        out[key.strip()] = value.strip()
    return out


@app.command("list")
def list_plugins(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    options: bool = typer.Option(False, "--options", help="Also every method's declared options (imports torch)."),
    method: str | None = typer.Argument(None, help="Only this method (with --options: its options)."),
    profile: str = typer.Option("quick", help="With --options: show the defaults of this profile."),
) -> None:
    """Every installed plugin, its version and the methods it registers (imports no torch without --options)."""
    import json

    from bench import plugins

    reg = plugins.registry()
    if method is not None:
        reg.get(method)
    if options:
        _list_options(reg, [method] if method else sorted(reg.methods), profile, as_json)
        return
    if as_json:
        rows = [
            {
                "plugin": p.name,
                "version": p.version,
                "distribution": p.distribution,
                "methods": p.methods,
                "error": p.error,
            }
            for p in reg.plugins
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console()
    _print_rows(
        console,
        "deocc-bench plugins",
        ("plugin", "version", "distribution", "methods"),
        [
            (
                p.name,
                p.version,
                p.distribution,
                Text(f"failed to load: {p.error}", style="red") if p.error else ", ".join(p.methods),
            )
            for p in sorted(reg.plugins, key=lambda p: p.name)
        ],
    )
    _print_rows(
        console,
        "methods",
        ("method", "mask", "trains on", "summary"),
        [
            (
                name,
                ", ".join(w for w, on in (("needs", spec.needs_mask), ("predicts", spec.predicts_mask)) if on),
                ", ".join(spec.trains_on),
                spec.summary,
            )
            for name, spec in sorted(reg.methods.items())
        ],
    )
    _print_rows(
        console,
        "recognizers (bench run --identification --id-model NAME)",
        ("recognizer", "plugin", "installed", "summary"),
        [
            (
                name,
                spec.plugin,
                "no" if spec.missing() else "yes",
                spec.summary + (f"\ninstall: {spec.install}" if spec.missing() else ""),
            )
            for name, spec in sorted(reg.recognizers.items())
        ],
    )


PROSE_MIN = 30  # the narrowest prose column worth a table; below it, each row's facts go above its prose


def _print_rows(console, title: str, header: tuple[str, ...], rows: list[tuple[str | Text, ...]]) -> None:
    """A table of ``rows`` that stays readable at any width: the first column is a name and the columns after it
    short facts, never wrapped or cut; the last is prose (plugin or user text), wrapped. When the terminal is
    too narrow for the prose to get PROSE_MIN characters, the table keeps two columns: the name, and the facts
    ("header: value") on a line above the prose. Every cell is plain text: ``[face]`` in a summary is printed,
    never read as rich markup."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    fixed = [
        max(cell_len(str(cell)) for cell in (head, *(row[i] for row in rows))) for i, head in enumerate(header[:-1])
    ]
    table = Table(title=Text(title))
    if sum(fixed) + 3 * len(header) + 1 + PROSE_MIN <= console.width:  # each column: 2 of padding, 1 of border
        for head in header[:-1]:
            table.add_column(head, no_wrap=True)
        table.add_column(header[-1], ratio=1, overflow="fold")
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    else:
        table.add_column(header[0], no_wrap=True)
        table.add_column(" / ".join(header[1:]), ratio=1, overflow="fold")
        for name, *facts, prose in rows:
            line = "; ".join(f"{head}: {value}" for head, value in zip(header[1:-1], facts, strict=True) if value)
            detail = Text().append(line + "\n" if line else "", style="dim").append(prose)  # only the facts dim
            table.add_row(Text(name), detail)
    console.print(table)


def _list_options(reg, names: list[str], profile: str, as_json: bool) -> None:
    """The declared options of each method, with the defaults ``profile`` resolves to (variants included)."""
    import json

    check_profile(profile)
    tables = {}
    for name in names:
        spec = reg.get(name)
        cls = spec.load()
        resolved = cls.Options.resolve(profile, spec.options, method=name).as_dict()
        rows = cls.Options.describe()
        for row in rows:
            row["default"] = resolved[row["name"]]
        tables[name] = rows
    if as_json:
        typer.echo(json.dumps(tables, indent=2, default=str))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console()
    for name, rows in tables.items():
        title = f"{name} options ({profile} profile): --opt {name.split(':')[0]}.KEY=VALUE"
        if not rows:
            console.print(Text(f"{name}: no options"))
            continue
        _print_rows(
            console,
            title,
            ("option", "type", "default", "range", "help"),
            [(r["name"], r["type"], repr(r["default"]), r["range"], r["help"]) for r in rows],
        )


def _default(name: str) -> Any:
    """RunConfig's default for the field ``name`` (a list of names as the comma-separated text the option takes;
    a list of paths as a repeatable option), so the CLI restates no default of its own."""
    value = field_default(name)
    return ",".join(value) if name in NAME_LISTS else value


def _opt(name: str, panel: str, help: str, *flags: str) -> Any:
    """The ``bench run`` option of RunConfig's field ``name``: its default from the declaration, its help and panel."""
    return typer.Option(_default(name), *flags, help=help, rich_help_panel=panel)


def _given(command: typer.Context) -> set[str]:
    """The options the user set (on the command line or from the environment), not left at their default."""
    return {n for n in command.params if command.get_parameter_source(n).name not in ("DEFAULT", "DEFAULT_MAP")}


METHODS, DATA, TRAINING, IDENTIFICATION, SPEED, OUTPUT = (
    "Methods and masks",
    "Data",
    "Training",
    "Identification (Fig. 12)",
    "Speed",
    "Output",
)


# Long in its signature alone (the body is ~40 lines): typer reads each option from a parameter, whose default
# and type ``_opt`` takes from the RunConfig field of that name. The docstring is the command's help.
@app.command()
def run(
    command: typer.Context,
    methods: str = _opt("methods", METHODS, "Methods, comma-separated (see `bench list`).", "--methods", "-m"),
    mask_source: str = _opt(
        "mask_source",
        METHODS,
        "Masks for methods that need one, comma-separated: gt (the oracle) and/or methods that predict a "
        "mask (oagan: the paper's Fig. 10).",
    ),
    mask_threshold: float = _opt("mask_threshold", METHODS, "Threshold of predicted masks."),
    opt: list[str] = typer.Option(
        [],
        "--opt",
        metavar="KEY=VALUE",
        help="key=value (every method) or method.key=value; repeatable (see `bench list --options`).",
        rich_help_panel=METHODS,
    ),
    dataset: str = _opt("dataset", DATA, "synthetic (embedded) or a CelebA folder (official layout)."),
    image_size: int | None = _opt("image_size", DATA, "Image size in px (default: the profile's)."),
    data_limit: int | None = _opt("data_limit", DATA, "At most this many images per split."),
    limit: int | None = _opt("limit", DATA, "At most this many samples per test split."),
    occluders: Path | None = _opt("occluders", DATA, "Folder of extra RGBA PNG occluders."),
    natural_folder: Path | None = _opt("natural_folder", DATA, "Your occluded faces (test_natural)."),
    mask_parts: str = _opt("mask_parts", DATA, "CelebAMask-HQ natural folder: its occluder parts, comma-separated."),
    paired_folder: list[Path] = _opt(
        "paired_folder", DATA, "Your own paired test set (input/, gt/, mask/ optional); repeatable."
    ),
    derive_mask: float | None = _opt("derive_mask", DATA, "Masks of paired folders without mask/: |input-gt| > T."),
    align: str = _opt(
        "align",
        DATA,
        "Your folders' faces: none (centre square) or dlib (face extra).",
    ),
    allow_partial: bool = _opt(
        "allow_partial",
        DATA,
        "CelebA: accept annotation files and images that disagree, loading the images all of them have.",
        "--allow-partial",
    ),
    seed: int = _opt("seed", DATA, "Seed of data generation and training."),
    profile: str = _opt(
        "profile", TRAINING, "quick (CPU, 64 px, minutes), standard (CPU, 64 px, ~25 min a method) or paper (128 px)."
    ),
    steps: int | None = _opt("steps", TRAINING, "Training steps per method (default: its profile's)."),
    time_budget: float | None = _opt("time_budget", TRAINING, "Training time cap per method (s)."),
    weights_dir: Path | None = _opt("weights_dir", TRAINING, "Folder of local pretrained files (vgg16.pth)."),
    inception_weights: Path | None = _opt("inception_weights", TRAINING, "Inception file for FID/KID."),
    identification: bool = _opt(
        "identification", IDENTIFICATION, "Also score rank-1..5 face identification.", "--identification"
    ),
    id_model: str = _opt(
        "id_model", IDENTIFICATION, escape("Recognizers, comma-separated (dlib: pip install -e '.[face]').")
    ),
    id_weights: Path | None = _opt(
        "id_weights", IDENTIFICATION, "Recognizer weights file (LightCNN-9: the official layout)."
    ),
    id_steps: int | None = _opt("id_steps", IDENTIFICATION, "Recognizer training steps (default: its profile's)."),
    device: str = _opt("device", SPEED, "auto, cpu or cuda."),
    batch_size: int = _opt("batch_size", SPEED, "Evaluation batch size."),
    precision: str = _opt("precision", SPEED, "fp32, or bf16 autocast (GPU)."),
    no_channels_last: bool = typer.Option(  # RunConfig.channels_last, on by default: this flag turns it off
        False, "--no-channels-last", help="Contiguous (NCHW) networks.", rich_help_panel=SPEED
    ),
    compile: bool = _opt("compile", SPEED, "torch.compile for inference (long runs).", "--compile"),
    output: Path = _opt("output", OUTPUT, "Output root (runs/, checkpoints/, cache/)."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only the report's path (stdout).", rich_help_panel=OUTPUT
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON summary (stdout), no progress.", rich_help_panel=OUTPUT
    ),
) -> None:
    """Train (or load from cache) each method, evaluate all of them under the same protocol, write the report."""
    from rich.console import Console

    from bench import plugins

    console = Console(stderr=True, quiet=quiet or as_json, soft_wrap=True)
    fields = {name: value for name, value in command.params.items() if name in RunConfig.__dataclass_fields__}
    fields["channels_last"] = not no_channels_last
    try:
        config = RunConfig(**fields, options=_parse_options(opt))
        registry = plugins.registry()
        plan = plan_run(  # names only: a typo is refused before torch is imported
            registry,
            config.methods,
            profile=config.profile,
            mask_source=config.mask_source,
            config=config,
            given=_given(command),
        )
        from bench.runner import Runner

        store = Runner(config, argv=sys.argv, console=console, plan=plan).run()
    except (BenchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    report = _render([store.root], None, 8, console)
    ctx = report.runs[0]
    if as_json:
        import json

        from bench.report.terminal import json_summary

        typer.echo(json.dumps(json_summary(ctx, report.path), indent=2))
    elif quiet:
        for label, error in ctx["failed"].items():
            typer.echo(f"failed: {label}: {error}", err=True)
        typer.echo(str(report.path))
    else:
        from bench.report.terminal import print_run

        print_run(Console(), ctx, report.path)
    if ctx["manifest"].get("status") != "complete":
        raise typer.Exit(1)


def _render(runs: list[Path], output: Path | None, examples: int, console) -> Report:
    """The report (and each run's exports), or one error line for a run folder that cannot be read."""
    from bench.report import render_report

    try:
        with console.status("writing the report"):
            return render_report(runs, output=output, examples=examples)
    except (BenchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def report(
    runs: list[Path] = typer.Argument(
        None, help="Run folders (default: the newest run under results/runs); several are compared side by side."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="HTML file (default: <first run>/report.html)."),
    results: Path = typer.Option(Path("results"), help="Output root searched for the newest run."),
    examples: int = typer.Option(8, help="Samples in each qualitative grid."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; the exit code says whether it worked."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as JSON on stdout."),
) -> None:
    """Render one self-contained HTML page (paper tables, paired statistics, charts) and refresh each run's
    results.json and LaTeX/Markdown tables."""
    from rich.console import Console

    if examples < 0:
        _fail(f"--examples must be 0 or more, got {examples}")
    if not runs:
        candidates = sorted((results / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            _fail(f"no runs under {results / 'runs'}; run `bench run` first or name a run folder")
        runs = [candidates[-1].parent]
    done = _render(runs, output, examples, Console(stderr=True, quiet=quiet or as_json, soft_wrap=True))
    if as_json:
        import json

        typer.echo(json.dumps({"report": str(done.path), "exports": [str(p) for p in done.exports]}, indent=2))
    elif not quiet:
        typer.echo(str(done.path))


@data_app.command("preview")
def data_preview(
    out: Path = typer.Option(Path("results/preview.png"), "--out", "-o"),
    size: int = typer.Option(64, help="Image size in pixels."),
    n: int = typer.Option(8, help="Faces per row."),
    seed: int = typer.Option(0),
    dataset: str = typer.Option("synthetic", help="'synthetic' or a CelebA folder."),
    occluders: Path | None = typer.Option(None, help="Folder of extra RGBA PNG occluders."),
) -> None:
    """Write a PNG grid of faces, synthetic and natural occlusions and their masks."""
    from bench.data.preview import preview_grid
    from bench.data.resolve import DataConfig, resolve_data
    from bench.io import check_output_file
    from bench.planning import check_image_size

    if n < 1:
        _fail(f"--n must be at least 1, got {n}")
    try:
        check_output_file(out, "--out", "preview.png", suffix=".png")
        check_image_size("--size", size)
        if dataset != "synthetic" and not Path(dataset.removeprefix("celeba:")).expanduser().is_dir():
            _fail(f"--dataset {dataset!r}: no such folder; use 'synthetic' or a CelebA folder")
        data = resolve_data(DataConfig(dataset, size, seed, occluders=occluders))
    except (BenchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    preview_grid(data.bench, out, n=n)
    typer.echo(str(out))


@study_app.command("export")
def study_export(
    run: Path = typer.Argument(..., help="Run folder."),
    methods: str = typer.Option(
        ..., "--methods", "-m", help="Comma-separated labels to compare (e.g. oagan,pconv@oagan)."
    ),
    items: int | None = typer.Option(None, help="Faces per participant (default: the paper's 300, or all if fewer)."),
    participants: int = typer.Option(3, help="Participants (paper: 3)."),
    split: str = typer.Option("test_natural", help="Which test split to show."),
    seed: int = typer.Option(0),
) -> None:
    """Write one blinded, randomised offline HTML form per participant (and the key) into <run>/user_study."""
    from bench.userstudy import export

    try:
        folder = export(run, [m.strip() for m in methods.split(",") if m.strip()], items, participants, seed, split)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(str(folder))


@study_app.command("tally")
def study_tally(
    run: Path = typer.Argument(..., help="Run folder."),
    answers: list[Path] = typer.Argument(..., help="Answer JSON files saved from the forms."),
) -> None:
    """Percentage of "best" votes per method with Wilson 95% intervals (shown by `bench report`)."""
    from bench.userstudy import tally

    try:
        rows = tally(run, answers)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for r in rows:
        typer.echo(f"{r['method']}: {r['percent']:.1f}% [{r['ci95_low']:.1f}, {r['ci95_high']:.1f}] of {r['n']}")


@app.command("export")
def export(
    run: Path = typer.Argument(..., help="Run folder."),
    folder: Path = typer.Argument(..., help="A new or empty folder to write the test sets into."),
) -> None:
    """Write a run's fixed test sets (inputs, true masks, index.csv) for a method that runs elsewhere."""
    from bench.exchange import export_run

    try:
        counts = export_run(run, folder)
    except (BenchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"{folder}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))


@app.command("import")
def import_(
    run: Path = typer.Argument(..., help="Run folder (exported with `bench export`)."),
    folder: Path = typer.Argument(..., help="Restorations: <split>/<name>.png, optionally <split>/mask/<name>.png."),
    label: str = typer.Option(..., "--label", "-l", help="The name its rows and report rows take."),
) -> None:
    """Score restorations computed elsewhere as one more label of a run, under the same protocol."""
    from rich.console import Console

    from bench.exchange import import_run

    try:
        counts = import_run(run, label, folder, Console(stderr=True, soft_wrap=True))
    except (BenchError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"{label}: scored " + ", ".join(f"{split} {n}" for split, n in counts.items()))


@app.command()
def perf(
    methods: str = typer.Option("identity,telea,oagan,pconv", "--methods", "-m"),
    sizes: str = typer.Option("64,128", help="Image sizes to measure."),
    batch_size: int = typer.Option(8),
    device: str = typer.Option("auto"),
    repeats: int = typer.Option(5),
    profile: str = typer.Option("quick", help="Method widths and iteration counts: quick, standard or paper."),
    output: Path | None = typer.Option(None, help="Also write the table as JSON here."),
    precision: str = typer.Option("fp32", help="fp32 or bf16 autocast; against eager fp32 when not the default."),
    channels_last: bool = typer.Option(True, help="Channels-last networks (the run default); timed against eager."),
    compile: bool = typer.Option(False, help="torch.compile for inference; timed against eager fp32."),
    weights_dir: Path | None = typer.Option(None, help="Also time LPIPS on its files here (docs/measures.md)."),
    inception_weights: Path | None = typer.Option(None, help="Also time FID/KID's Inception features on this file."),
) -> None:
    """Measure images/s (inference and training step), harness overhead and peak memory per method, and the cost per
    image of each measure whose weights are given (LPIPS, FID/KID, LMD)."""
    from bench.acceleration import Acceleration
    from bench.perf import run_perf

    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        _fail(f"--sizes expects comma-separated whole numbers, got {sizes!r}")
    try:
        run_perf(
            [m.strip() for m in methods.split(",") if m.strip()],
            size_list,
            batch_size=batch_size,
            device=device,
            repeats=repeats,
            output=output,
            profile=profile,
            accel=Acceleration(precision, channels_last, compile),
            weights_dir=weights_dir,
            inception_weights=inception_weights,
        )
    except (BenchError, ValueError) as exc:
        _fail(str(exc))


INTERRUPTED = "interrupted: finished work is kept; run the same command again to resume where it stopped"


def _one_line_warnings():
    """A ``warnings.showwarning``: each message once, as one ``warning:`` line on stderr (no source lines)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            typer.echo(f"warning: {text}", err=True)

    return show


def main() -> None:
    """The console entry point: errors the user can act on are one line each, never a traceback."""
    import signal
    import warnings

    from bench.allocator import keep_freed_memory

    keep_freed_memory()

    def terminated(signum, frame) -> None:  # SIGTERM (a scheduler, `timeout`) ends a run like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    warnings.showwarning = _one_line_warnings()
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except typer.TyperException as exc:  # usage errors (typer's own click): its message and exit code
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:
        from bench.io import disk_error_line

        line = disk_error_line(exc)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)
    except BenchError as exc:  # every error a user can fix: its one line
        typer.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        sys.exit(2)
    if code == 130:  # Ctrl-C (typer turns it into exit code 130)
        typer.echo(INTERRUPTED, err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
