"""``bench report``: one self-contained HTML page from run folders alone (no model needed, no network).

The page holds, per run, the paper's tables with significance groups, paired differences between methods,
charts (inline SVG), the Fig. 7 block and qualitative grids (images as data URIs); with several runs, a
side-by-side section first (seeds pooled into mean ± std, other configurations as columns). Each run's
``results.json``, ``summary.csv`` and LaTeX/Markdown tables are refreshed in its folder (:mod:`bench.report.exports`)
from the very rows the page shows.

Nothing is rendered from a run folder that does not verify: its manifest is checked against the schema, and every
metrics row, every prediction PNG a row scores and every label the manifest calls evaluated is checked against the
digests recorded as they were written (:meth:`bench.runstore.RunStore.frame`); the first mismatch is one error
naming the file, and nothing is written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.io import atomic_write_bytes, check_output_file, disk_error_line
from bench.runstore import RunStore


@dataclass(frozen=True)
class Report:
    """What ``render_report`` produced: the page, each run's context and the exported files."""

    path: Path
    runs: list[dict[str, Any]]
    exports: list[Path]


def render_report(runs: list[Path], output: Path | None = None, examples: int = 8) -> Report:
    import jinja2

    from bench.report import across_runs, exports
    from bench.report.context import SPLIT_TITLES, run_context

    stores = [RunStore(Path(r)) for r in runs]
    default = stores[0].root / "report.html"
    path = Path(output or default)
    check_output_file(path, "-o", "report.html", allowed=default)  # before any work: never into a run's files
    contexts = [run_context(s, examples) for s in stores]  # every run verified before anything is written
    written: list[Path] = []
    for store, ctx in zip(stores, contexts, strict=True):
        ctx["exports"] = exports.tables(ctx)
        try:
            written += exports.write(ctx, store.root)
        except OSError as exc:  # a read-only run folder (someone else's) still gets a report written elsewhere
            if output is None or disk_error_line(exc) is None:
                raise
            warnings.warn(f"{store.root}: results.json and tables not refreshed ({exc.strerror})", stacklevel=1)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "jinja"]),
    )
    html = env.get_template("report.html.jinja").render(
        runs=contexts, split_titles=SPLIT_TITLES, side_by_side=across_runs.side_by_side(contexts)
    )
    atomic_write_bytes(path, html.encode())
    return Report(path, contexts, written)
