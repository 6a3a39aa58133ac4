"""The documentation stays true to the code: the CLI reference is the typer app's own rendering, the results
page is built from a real run folder's exports, and the README's links (which the strict mkdocs build of docs/
does not see) point at files that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_current():
    gen_cli = _module(REPO / "docs" / "gen_cli.py")
    if gen_cli.render() != gen_cli.TARGET.read_text():
        pytest.fail("docs/cli.md is stale: run python docs/gen_cli.py", pytrace=False)


def test_the_cli_reference_holds_every_command_and_option():
    """What the staleness check compares against is the whole CLI, not a part of it."""
    import click
    import typer

    from bench.cli import app

    text = (REPO / "docs" / "cli.md").read_text()

    def walk(command: click.Command, path: str) -> None:
        assert f"$ {path} [OPTIONS]" in text, f"{path}'s usage is missing from docs/cli.md"
        for param in command.params:
            for flag in param.opts if isinstance(param, click.Option) else ():
                assert flag in text, f"{path} {flag} is missing from docs/cli.md"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "bench")


def test_the_readme_links_point_at_files_that_exist():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert "docs/plugins.md" in local and "docs/cli.md" in local
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


@pytest.mark.slow
def test_the_results_page_is_built_from_a_run_folder(tmp_path, bench_main):
    results_page = _module(REPO / "benchmarks" / "results_page.py")
    argv = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "4", "--data-limit", "12"]
    code, _, err = bench_main(*argv, "--output", str(tmp_path), "--quiet")
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())

    page = results_page.page([run], command="python benchmarks/results_page.py RUN")
    assert f"## Run `{manifest['run_id']}`" in page
    assert f"`{shlex.join(manifest['argv'])}`" in page
    for fact in (manifest["created"], manifest["finished"], manifest["platform"], manifest["device"]):
        assert fact in page
    if manifest["git"]:
        assert manifest["git"] in page
    table = (run / "tables" / "table3.md").read_text().strip()
    assert "telea@gt" in table and table in page  # the export, verbatim

    (run / "tables" / "table3.md").unlink()
    (run / "tables" / "table3.tex").unlink()
    with pytest.raises(results_page.PageError, match=r"no tables/\*\.md; run `bench report .*` to export them"):
        results_page.page([run], command="")
    with pytest.raises(results_page.PageError, match="no manifest.json; give a run folder"):
        results_page.page([tmp_path], command="")
