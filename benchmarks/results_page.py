"""The docs site's results page, built from run folders alone: per run, what produced it (command, commit, date,
machine, from its manifest), what was trained, then the run's own Markdown tables (``tables/*.md``, exported by
``bench run`` / ``bench report``) verbatim. No number on the page is typed by hand.

Usage: ``.venv/bin/python benchmarks/results_page.py RUN_DIR [RUN_DIR ...] > docs/results.md``
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

HEADER = """# Results

Generated from the run folders below by

```
{command}
```

Do not edit by hand. Each run states the command that made it, the commit it ran at (`-dirty`: with uncommitted
changes), its dates and the machine, then the tables that `bench report` exported into the run's `tables/`
folder, unchanged. Studies measured by hand (other profiles, the CelebA sample, identification) are on
[Recorded measurements](measurements.md); the protocol behind every column is on
[Protocol and metrics](protocol.md).
"""


class PageError(Exception):
    """A folder that is not a finished run with exported tables: one line naming it and the fix."""


def load_manifest(run: Path) -> dict[str, Any]:
    path = run / "manifest.json"
    if not path.is_file():
        raise PageError(f"{run}: no manifest.json; give a run folder (results/runs/<run>)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PageError(f"{path}: unreadable ({exc}); give a run folder written by bench run") from exc


def exported_tables(run: Path) -> list[Path]:
    """Table III first, then the ablation tables (Table IV per family) by name."""
    tables = sorted((run / "tables").glob("*.md"), key=lambda p: (p.name != "table3.md", p.name))
    if not tables:
        raise PageError(f"{run}: no tables/*.md; run `bench report {run}` to export them")
    return tables


def _cell(value: Any) -> str:
    return "–" if value in (None, "") else str(value).replace("|", "\\|")


def run_section(run: Path) -> str:
    m = load_manifest(run)
    tables = exported_tables(run)
    cfg, data = m.get("config", {}), m.get("data", {})
    versions = m.get("versions", {})
    splits = ", ".join(f"{k} {v}" for k, v in data.get("splits", {}).items())
    facts = [
        ("command", f"`{shlex.join(m.get('argv', []))}`"),
        ("commit", f"`{m.get('git') or 'unknown (not a git checkout)'}`"),
        ("date", f"created {m.get('created')}, finished {m.get('finished')} (status: {m.get('status')})"),
        (
            "machine",
            f"{m.get('platform')}; device {m.get('device')}, {m.get('world_size', 1)} process(es); "
            f"python {versions.get('python')}, torch {versions.get('torch')}",
        ),
        ("data", f"{data.get('name')} ({cfg.get('image_size')} px): {splits}"),
        ("profile, seed", f"{cfg.get('profile')}, {cfg.get('seed')}"),
    ]
    out = [f"## Run `{m.get('run_id', run.name)}`", "", "| what | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in facts]
    trained = {k: t for k, t in m.get("training", {}).items() if "steps_trained" in t}
    if trained:
        out += [
            "",
            "Trained models (from the manifest):",
            "",
            "| method | steps trained | finished | served from the cache | training (s) | torch threads |",
            "|---|--:|---|---|--:|--:|",
        ]
        for name, t in sorted(trained.items()):
            cells = [t.get(k) for k in ("steps_trained", "finished", "cached", "train_seconds", "torch_threads")]
            out.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    for table in tables:
        out += ["", table.read_text().strip()]
    return "\n".join(out) + "\n"


def page(runs: list[Path], command: str) -> str:
    return "\n".join([HEADER.format(command=command), *(run_section(r) for r in runs)])


def main(argv: list[str]) -> int:
    if not argv:
        print(
            "error: no run folder given; usage: results_page.py RUN_DIR [RUN_DIR ...] > docs/results.md",
            file=sys.stderr,
        )
        return 2
    runs = [Path(a) for a in argv]
    command = shlex.join(["python", "benchmarks/results_page.py", *argv])
    try:
        sys.stdout.write(page(runs, command))
    except PageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
