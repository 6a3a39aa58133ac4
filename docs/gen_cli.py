"""Write docs/cli.md, the CLI reference, from the typer app itself (typer's own ``utils docs``), so the reference
is never written by hand beside ``bench --help``; tests/test_docs.py fails when the file is stale.

Usage: ``.venv/bin/python docs/gen_cli.py`` (from anywhere; it writes next to itself).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
TARGET = DOCS / "cli.md"
TITLE = "CLI reference"
NOTE = (
    "Generated from the typer app in `bench/cli.py` by `python docs/gen_cli.py` (typer's `utils docs`); do not edit "
    "by hand. `bench COMMAND --help` prints the same in a terminal."
)


def render() -> str:
    """The reference as typer renders it, with a note under the title saying where it comes from."""
    done = subprocess.run(
        [sys.executable, "-m", "typer", "bench.cli", "utils", "docs", "--name", "bench", "--title", TITLE],
        capture_output=True,
        text=True,
        cwd=DOCS.parent,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: typer could not render bench.cli's help: {done.stderr.strip()}")
    title, _, body = done.stdout.partition("\n")
    if title != f"# {TITLE}":
        raise SystemExit(f"error: typer's docs begin with {title!r}, not the title '# {TITLE}'")
    return f"{title}\n\n{NOTE}\n{body.rstrip()}\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
