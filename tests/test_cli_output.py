"""What a new user reads: the real CLI in a subprocess at 80 columns (the width of a pipe, and of many terminals).

Every table and help screen fits 80 columns without cutting a name (``recog…``) or splitting one over two lines
(``lambda_perceptua`` / ``l``); text from plugins is printed as written, never eaten as rich markup
(``pip install -e '.[face]'``); and a typo in a name is refused before torch is imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bench import hookimpl, plugins
from bench.cli import app
from bench.method import MethodSpec

WIDTH = 80


def _bench(*argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, COLUMNS=str(WIDTH), OMP_NUM_THREADS="1", **env)
    environ.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, timeout=600, env=environ
    )


def _fits(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not wide, "\n".join(wide)


def _first_cells(text: str) -> set[str]:
    """The first cell of every table row (``│ name │ ...``, or an unboxed ``name  ...``): where a name is printed."""
    return {m[1] for line in text.splitlines() if (m := re.match(r"^(?:[│┃] )?([^\s│┃─━]+)", line))}


def test_bench_list_fits_80_columns_with_every_name_whole():
    done = _bench("list")
    assert done.returncode == 0, done.stderr
    _fits(done.stdout)
    reg = plugins.registry()
    cells = _first_cells(done.stdout)
    assert set(reg.methods) | set(reg.recognizers) | {p.name for p in reg.plugins} <= cells
    if reg.recognizers["dlib"].missing():  # the install hint, as the plugin wrote it, where the extra is missing
        assert "'.[face]'" in done.stdout
    assert "'.'" not in done.stdout


def test_bench_list_options_fits_80_columns_with_every_option_name_whole():
    done = _bench("list", "--options")
    assert done.returncode == 0, done.stderr
    _fits(done.stdout)
    listed = json.loads(_bench("list", "--options", "--json").stdout)
    names = {row["name"] for rows in listed.values() for row in rows}
    assert len(listed) == len(plugins.registry().methods) and names <= _first_cells(done.stdout)


def _commands(group, prefix: tuple[str, ...] = ()):
    """Every (sub)command of the click group behind ``app``, as argv prefixes."""
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_help_screen_fits_80_columns_with_every_option_whole():
    import typer.main

    group = typer.main.get_command(app)
    for argv, command in _commands(group):
        done = _bench(*argv, "--help")
        assert done.returncode == 0, (argv, done.stderr)
        _fits(done.stdout)
        opts = {o for p in command.params for o in p.opts if o.startswith("--")}
        shown = {m[1] for line in done.stdout.splitlines() if (m := re.match(r"^│[ *]+(--[a-z-]+)", line))}
        assert opts <= shown, (argv, opts - shown)


def test_bench_run_help_is_grouped_and_keeps_its_help_column_wide():
    done = _bench("run", "--help")
    panels = re.findall(r"^╭─ (.+?) ─", done.stdout, re.M)
    assert panels == ["Options", "Methods and masks", "Data", "Training", "Identification (Fig. 12)", "Speed", "Output"]
    assert "'.[face]'" in done.stdout  # --id-model's hint survives typer's rich markup
    # the help column starts at most 40 characters in, so each option's help is a few lines, not a dozen
    starts = [len(m[1]) for m in re.finditer(r"^(│ --[a-z-]+(?: +-[a-z])? +<[^>]+> +)\S", done.stdout, re.M)]
    assert starts and max(starts) <= 40, starts
    assert len(done.stdout.splitlines()) < 90


def test_plugin_text_is_printed_as_written_not_read_as_markup():
    class Marked:
        @hookimpl
        def register_methods(self, register):
            register(
                MethodSpec(
                    name="marked",
                    factory="baselines.classical:IdentityMethod",
                    summary="keeps [bold]tags[/bold]; pip install '.[extra]'",
                )
            )

    plugins.reset()
    plugins.get_manager().register(Marked(), name="marked")
    try:
        result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "160"})
    finally:
        plugins.reset()
    assert result.exit_code == 0, result.output
    assert "keeps [bold]tags[/bold]; pip install '.[extra]'" in result.output


TYPOS = [
    ["--methods", "oagn"],
    ["--methods", "telea", "--mask-source", "gtt"],
    ["--methods", "identity", "--mask-source", "gt"],
    ["--methods", "identity", "--id-steps", "3"],
    ["--methods", "identity", "--identification", "--id-model", "lightcnn8"],
    ["--methods", "telea", "--mask-source", "gt", "--opt", "pconv.lr=1"],
]


@pytest.mark.parametrize("argv", TYPOS, ids=[" ".join(a) for a in TYPOS])
def test_a_typo_in_a_name_is_refused_before_torch_is_imported(argv, tmp_path):
    """Method names, mask sources, option scopes and options that need another are checked from the registry's
    names alone: the error comes in well under a second, not after torch and every method module load."""
    code = (
        "import sys\nfrom bench.cli import main\n"
        f"sys.argv = ['bench', 'run', *{argv!r}, '--output', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_end_of_run_table_fits_80_columns_and_holds_the_reference(tmp_path):
    """A run that does not name identity still scores it (the floor), and its last table shows it at 80 columns."""
    done = _bench(
        "run",
        "--methods",
        "telea",
        "--mask-source",
        "gt",
        "--limit",
        "4",
        "--data-limit",
        "8",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (manifest,) = tmp_path.glob("runs/*/manifest.json")
    assert set(json.loads(manifest.read_text())["methods"]) == {"telea@gt", "identity"}
    _fits(done.stdout.replace(f"report: {manifest.parent}/report.html", ""))  # a path is never broken up
    assert {"identity", "telea@gt"} <= _first_cells(done.stdout)
