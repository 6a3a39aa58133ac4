"""The ``bench`` command line. Heavy imports (torch, timm) happen inside commands, never at import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from bench.report import Report

app = typer.Typer(
    help="Face de-occlusion benchmark: train and evaluate OA-GAN and baselines under one protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Look at the data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
study_app = typer.Typer(
    help="The user study of the paper's Fig. 11: export blinded forms, tally answers.", no_args_is_help=True
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
        try:
            reg.get(method)
        except KeyError as exc:
            _fail(exc.args[0])
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
    from rich.table import Table

    table = Table(title="deocc-bench plugins")
    for col in ("plugin", "version", "distribution", "methods"):
        table.add_column(col)
    for p in sorted(reg.plugins, key=lambda p: p.name):
        methods = ", ".join(p.methods) if not p.error else f"[red]failed to load: {p.error}"
        table.add_row(p.name, p.version, p.distribution, methods)
    console = Console()
    console.print(table)
    details = Table(title="methods")
    details.add_column("method", no_wrap=True)
    for col in ("needs mask", "predicts mask", "trains on"):
        details.add_column(col, no_wrap=True)
    details.add_column("summary", ratio=1)
    for name, spec in sorted(reg.methods.items()):
        details.add_row(
            name,
            "yes" if spec.needs_mask else "",
            "yes" if spec.predicts_mask else "",
            ",".join(spec.trains_on),
            spec.summary,
        )
    console.print(details)
    recognizers = Table(title="recognizers (bench run --identification --id-model NAME)")
    for col in ("recognizer", "plugin", "installed"):
        recognizers.add_column(col, no_wrap=True)
    recognizers.add_column("summary", ratio=1)
    for name, spec in sorted(reg.recognizers.items()):
        missing = spec.missing()
        recognizers.add_row(name, spec.plugin, f"no: {spec.install}" if missing else "yes", spec.summary)
    console.print(recognizers)


def _list_options(reg, names: list[str], profile: str, as_json: bool) -> None:
    """The declared options of each method, with the defaults ``profile`` resolves to (variants included)."""
    import json

    from bench.options import OptionError
    from bench.planning import RunError, check_profile

    try:
        check_profile(profile)
    except RunError as exc:
        _fail(str(exc))
    tables = {}
    for name in names:
        spec = reg.get(name)
        try:
            cls = spec.load()
            resolved = cls.Options.resolve(profile, spec.options, method=name).as_dict()
        except (ImportError, AttributeError, OptionError) as exc:
            _fail(f"method {name!r}: cannot read its options ({exc})")
        rows = cls.Options.describe()
        for row in rows:
            row["default"] = resolved[row["name"]]
        tables[name] = rows
    if as_json:
        typer.echo(json.dumps(tables, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, rows in tables.items():
        table = Table(title=f"{name} options ({profile} profile): --opt {name.split(':')[0]}.KEY=VALUE")
        table.add_column("option", overflow="fold")  # wrapped, never cut to "…"
        table.add_column("type", overflow="fold")
        table.add_column("default", overflow="fold")
        table.add_column("range", overflow="fold")
        table.add_column("help", ratio=1, overflow="fold")
        for row in rows:
            table.add_row(row["name"], row["type"], repr(row["default"]), row["range"], row["help"])
        console.print(table if rows else f"{name}: no options")


@app.command()
def run(
    methods: str = typer.Option(
        "oagan,pconv", "--methods", "-m", help="Comma-separated method names (see `bench list`)."
    ),
    dataset: str = typer.Option("synthetic", help="'synthetic' (embedded) or a CelebA folder in its official layout."),
    profile: str = typer.Option(
        "quick",
        help="quick (CPU, 64 px, minutes), standard (CPU, 64 px, ~25 min per method) or paper (128 px, the paper's).",
    ),
    image_size: int | None = typer.Option(None, help="Override the profile's image size."),
    mask_source: str = typer.Option(
        "oagan",
        help="Masks for mask-requiring methods, comma-separated: gt (the oracle) and/or methods that predict a "
        "mask (default oagan, the paper's Fig. 10 protocol), e.g. gt,oagan.",
    ),
    mask_threshold: float = typer.Option(0.5, help="Binarization threshold of predicted masks."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, help="Seed of data generation and training."),
    output: Path = typer.Option(Path("results"), help="Output root (runs/ and checkpoints/)."),
    steps: int | None = typer.Option(
        None, help="Training steps for every method (default: each method's profile default)."
    ),
    time_budget: float | None = typer.Option(None, help="Wall-clock cap per method's training, seconds."),
    opt: list[str] = typer.Option(
        [], "--opt", help="Method option key=value (all methods) or method.key=value; repeatable."
    ),
    weights_dir: Path | None = typer.Option(None, help="Folder of local pretrained files (e.g. vgg16.pth)."),
    limit: int | None = typer.Option(None, help="Evaluate at most this many samples per test split."),
    occluders: Path | None = typer.Option(None, help="Folder of extra RGBA PNG occluders for paired synthesis."),
    batch_size: int = typer.Option(16, help="Evaluation batch size."),
    data_limit: int | None = typer.Option(None, help="CelebA: at most this many images per split."),
    natural_folder: Path | None = typer.Option(
        None, help="Your own naturally occluded faces (evaluated as test_natural)."
    ),
    identification: bool = typer.Option(False, help="Also run the rank-1..5 identification protocol (Fig. 12)."),
    id_model: str = typer.Option(
        "lightcnn9", help="Recognizers for --identification, comma-separated (dlib: pip install -e '.[face]')."
    ),
    id_weights: Path | None = typer.Option(None, help="Local recognizer weights (LightCNN-9: official layout)."),
    id_steps: int | None = typer.Option(None, help="Recognizer training steps (LightCNN-9: 600 quick, 2000 paper)."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 autocast (GPU; the gradient penalty stays fp32)."),
    channels_last: bool = typer.Option(False, help="Networks in channels-last memory format (training and inference)."),
    compile: bool = typer.Option(False, help="torch.compile the networks for inference (pays on long evaluations)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or tables: only the report's path (stdout)."),
    as_json: bool = typer.Option(False, "--json", help="No progress; one JSON summary on stdout instead of the table."),
) -> None:
    """Train (or load from cache) each method, evaluate all of them under the same protocol, write the report."""
    from rich.console import Console

    from bench.runner import RunConfig, RunError, Runner

    names = [m.strip() for m in methods.split(",") if m.strip()]
    console = Console(stderr=True, quiet=quiet or as_json)
    try:
        config = RunConfig(
            methods=names,
            dataset=dataset,
            profile=profile,
            image_size=image_size,
            mask_source=mask_source,
            mask_threshold=mask_threshold,
            device=device,
            seed=seed,
            output=output,
            steps=steps,
            time_budget=time_budget,
            options=_parse_options(opt),
            weights_dir=weights_dir,
            limit=limit,
            occluders=occluders,
            batch_size=batch_size,
            data_limit=data_limit,
            natural_folder=natural_folder,
            identification=identification,
            id_weights=id_weights,
            id_steps=id_steps,
            id_model=id_model,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
        )
        store = Runner(config, argv=sys.argv, console=console).run()
    except (RunError, FileNotFoundError, ValueError) as exc:
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
    except (FileNotFoundError, ValueError) as exc:
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
    done = _render(runs, output, examples, Console(stderr=True, quiet=quiet or as_json))
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
    from bench.planning import RunConfig, RunError
    from bench.runner import resolve_dataset

    if n < 1:
        _fail(f"--n must be at least 1, got {n}")
    try:
        bench, _ = resolve_dataset(
            RunConfig(methods=["preview"], dataset=dataset, image_size=size, seed=seed, occluders=occluders)
        )
    except (RunError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(bench, out, n=n)
    typer.echo(str(out))


@study_app.command("export")
def study_export(
    run: Path = typer.Argument(..., help="Run folder."),
    methods: str = typer.Option(
        ..., "--methods", "-m", help="Comma-separated labels to compare (e.g. oagan,pconv@oagan)."
    ),
    items: int = typer.Option(300, help="Faces per participant (paper: 300)."),
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
    channels_last: bool = typer.Option(False, help="Channels-last networks; timed against eager fp32."),
    compile: bool = typer.Option(False, help="torch.compile for inference; timed against eager fp32."),
) -> None:
    """Measure images/s (inference and training step), harness overhead and peak memory per method."""
    from bench.acceleration import Acceleration
    from bench.perf import run_perf
    from bench.planning import RunError

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
        )
    except (RunError, ValueError) as exc:
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

    from bench.plugins import PluginError

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
    except PluginError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if code == 130:  # Ctrl-C (typer turns it into exit code 130)
        typer.echo(INTERRUPTED, err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
