"""Tables that fit the terminal they are printed on (80 columns when piped): a name is never cut to "meth…".

Headers wrap at spaces; when the columns still do not fit, the least important ones are left out and the
caption names them (``--json`` has everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

GAP = 2  # characters between columns: one of padding, one of the (blank) column divider


@dataclass(frozen=True)
class Column:
    """``priority``: lower is dropped first when the terminal is too narrow (the first column is always kept)."""

    header: str
    priority: int = 1
    right: bool = True


def layout(columns: list[Column], rows: list[list[str]], width: int) -> tuple[list[int], list[int], list[str]]:
    """Which columns to show at ``width`` characters, how wide each is, and the headers left out.

    A column is as wide as its widest cell and its header's longest word (headers wrap at spaces); space left
    over unwraps headers from the left.
    """
    cells = [[r[i] for r in rows] for i in range(len(columns))]
    natural = [max([len(w) for w in c.header.split()] + [len(x) for x in cells[i]]) for i, c in enumerate(columns)]
    full = [max([len(c.header)] + [len(x) for x in cells[i]]) for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    dropped: list[str] = []
    by_priority = sorted(range(1, len(columns)), key=lambda i: (columns[i].priority, -i))

    def used() -> int:
        return sum(natural[i] for i in keep) + GAP * (len(keep) - 1)

    while used() > width and by_priority:
        i = by_priority.pop(0)
        keep.remove(i)
        dropped.append(columns[i].header)
    spare = width - used()
    widths = []
    for i in keep:
        grow = max(0, min(full[i] - natural[i], spare))
        spare -= grow
        widths.append(natural[i] + grow)
    return keep, widths, dropped


def print_table(console, title: str, columns: list[Column], rows: list[list[str]], caption: str = "") -> None:
    """Print ``rows`` under ``title`` within ``console.width`` characters, ``caption`` under it; name the
    columns left out."""
    from rich import box
    from rich.table import Table

    keep, widths, dropped = layout(columns, rows, console.width)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0))
    for i, w in zip(keep, widths, strict=True):
        table.add_column(columns[i].header, justify="right" if columns[i].right else "left", width=w)
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    console.print(table)
    if caption:
        console.print(caption, highlight=False)
    if dropped:
        console.print(
            f"not shown at {console.width} columns: {', '.join(dropped)} (widen the terminal or use --json)",
            highlight=False,
        )


def _paired(ctx: dict[str, Any], label: str, column: str) -> float | None:
    """A label's ``column`` (e.g. ``psnr_mean``) on the synthetic paired set."""
    from bench.report.context import summary_value

    return summary_value(ctx["summary"], label, "test_paired", column)


def print_run(console, ctx: dict[str, Any], report: Path) -> None:
    """``bench run``'s last words: one line per label on the synthetic paired set (the input last, marked),
    what "±" and the groups mean, failures, the report's path (names and errors as text, never as markup)."""
    from rich.markup import escape

    letters = {m: c["letters"] for m, c in ctx["compared"].get("test_paired", {}).items()}
    columns = [
        Column("method", right=False),
        Column("PSNR (dB)", 9),
        Column("± std", 3),
        Column("SSIM", 8),
        Column("mask IoU", 5),
        *(Column(f"{m.upper()} group", 4, right=False) for m in letters),
        Column("note", 6, right=False),
    ]
    rows = []
    labels = sorted(dict.fromkeys([*ctx["labels"], *ctx["failed"]]), key=lambda label: label == ctx["reference"])
    for label in labels:
        psnr, std, ssim, iou = (_paired(ctx, label, c) for c in ("psnr_mean", "psnr_std", "ssim_mean", "mask_iou_mean"))
        note = "failed" if label in ctx["failed"] else ("input" if label == ctx["reference"] else "")
        rows.append(
            [
                label,
                "–" if psnr is None else f"{psnr:.2f}",
                "" if std is None or psnr is None else f"±{std:.2f}",
                "–" if ssim is None else f"{ssim:.3f}",
                "–" if iou is None else f"{iou:.3f}",
                *(letters[m].get(label, "–") for m in letters),
                note,
            ]
        )
    status = ctx["manifest"].get("status", "?")
    caption = "± is the standard deviation over images. "
    if letters:
        caption += "Methods sharing a group letter are not significantly different (paired Wilcoxon, Holm, 0.05). "
    caption += (
        "input: the occluded input itself, scored as it is."
        if ctx["reference"]
        else "No input row: no label returns its input."
    )
    title = f"run {ctx['id']} ({status}), synthetic paired occlusions"
    print_table(console, title, columns, rows, caption)
    for label, error in ctx["failed"].items():
        console.print(f"failed: {escape(label)}: {escape(str(error))}", highlight=False)
    console.print(f"report: {escape(str(report))}", soft_wrap=True, highlight=False)


def json_summary(ctx: dict[str, Any], report: Path) -> dict[str, Any]:
    """What a script needs after ``bench run --json``: where things are, and each label's headline numbers."""
    letters = {m: c["letters"] for m, c in ctx["compared"].get("test_paired", {}).items()}
    methods = {}
    for label in dict.fromkeys([*ctx["labels"], *ctx["failed"]]):
        methods[label] = {
            "status": "failed" if label in ctx["failed"] else "evaluated",
            **{m: _paired(ctx, label, f"{m}_mean") for m in ("psnr", "ssim", "region_psnr", "mask_iou")},
            "groups": {m: letters[m].get(label) for m in letters},
        }
    root = Path(ctx["root"])
    return {
        "run": str(root),
        "status": ctx["manifest"].get("status"),
        "report": str(report),
        "results": str(root / "results.json"),
        "reference": ctx["reference"],
        "methods": methods,
    }
