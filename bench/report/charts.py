"""The report's charts: matplotlib figures rendered to inline SVG (text as paths, so no font or network is needed).

Every chart has titled axes with units; the input (the reference label, whose output is its input) is drawn
as a dashed black line or marker, so a reader sees at a glance how far a method moved from doing nothing.
Each function returns the SVG markup, or None when the run has nothing to draw.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.report.paired import LOWER_IS_BETTER, METRICS

REFERENCE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2}
VARIANT_TITLES = {
    "pretrained": "pretrained",
    "a": "(a) trained on clean faces",
    "b": "(b) trained on each method's restorations",
}
SPLIT_NAMES = {"test_paired": "synthetic", "test_natural": "natural", "test_clean": "clean"}
_RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "deocc-bench",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


@contextmanager
def _canvas(width: float, height: float) -> Iterator[Any]:
    """An empty figure (constrained layout) under the report's style."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        yield Figure(figsize=(width, height), layout="constrained")


@contextmanager
def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw: Any) -> Iterator[tuple[Any, Any]]:
    with _canvas(width, height) as fig:
        yield fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _svg(fig, name: str) -> str:
    """The figure as SVG markup whose ids are prefixed with ``name``, so several charts share one page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.S)  # RDF boilerplate
    ids = set(re.findall(r'id="([^"]+)"', text))
    if ids:
        pattern = re.compile(
            r'(id="|#)(' + "|".join(map(re.escape, sorted(ids, key=len, reverse=True))) + r')(?=["\)])'
        )
        text = pattern.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def colors(labels: list[str]) -> dict[str, Any]:
    """One colour per label, the same in every chart."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _finite(df, metric: str):
    return df[np.isfinite(df[metric])] if metric in df else df.iloc[0:0]


def _panels(part) -> list[tuple[str, str]]:
    """(metric, axis title) of each panel: PSNR and SSIM, then each bench.measures column the rows have (LPIPS,
    LMD: lower is better)."""
    measured = [m for m in METRICS if m in LOWER_IS_BETTER and m in part and np.isfinite(part[m]).any()]
    return [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), *((m, METRICS[m][0]) for m in measured)]


def _names(panels: list[tuple[str, str]]) -> str:
    names = [unit.split(" (")[0] for _, unit in panels]
    return ", ".join(names[:-1]) + " and " + names[-1]


def by_group(
    df,
    key: str,
    title: str,
    labels: list[str],
    reference: str | None,
    order: list[str] | None = None,
    split: str = "test_paired",
    set_title: str = "synthetic paired occlusions",
) -> str | None:
    """Mean PSNR and SSIM on a paired ``split`` (the synthetic one, or a --paired-folder's) per value of ``key``
    (occluder family or area bin)."""
    part = df[(df["split"] == split) & (df[key].astype(str) != "")] if key in df else df.iloc[0:0]
    if part.empty:
        return None
    groups = order or sorted(part[key].unique())
    groups = [g for g in groups if g in set(part[key])]
    palette = colors(labels)
    shown = [label for label in labels if label != reference and label in set(part["label"])]
    panels = _panels(part)  # PSNR, SSIM, and bench.measures' columns where computed
    height = 0.6 + 0.32 * len(groups) + 0.25 * math.ceil(len(shown) / 4)
    with _figure(5 * len(panels), height, ncols=len(panels), sharey=True) as (fig, ax):
        for col, (metric, unit) in enumerate(panels):
            axis = ax[0, col]
            data = _finite(part, metric)
            means = data.groupby([key, "label"])[metric].mean()
            y = np.arange(len(groups))
            for k, label in enumerate(shown):
                values = [means.get((g, label), np.nan) for g in groups]
                offset = (k - (len(shown) - 1) / 2) * min(0.7 / max(len(shown), 1), 0.15)
                axis.plot(values, y + offset, "o", color=palette[label], markersize=4.5, label=label)
            if reference is not None:
                values = [means.get((g, reference), np.nan) for g in groups]
                axis.plot(
                    values,
                    y,
                    "|",
                    color="black",
                    markersize=14,
                    markeredgewidth=2,
                    zorder=3,
                    label=f"input ({reference})",
                )
            axis.set_xlabel(unit + (" (lower is better)" if metric in LOWER_IS_BETTER else " (higher is better)"))
        counts = part.groupby(key)["sample"].nunique()
        ax[0, 0].set_yticks(y, [f"{g} (n={counts.get(g, 0)})" for g in groups])
        ax[0, 0].invert_yaxis()  # the axes share y: once for both
        ax[0, 0].set_ylabel(title)
        handles, names = ax[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(4, len(names)), frameon=False)
        fig.suptitle(f"{_names(panels)} by {title} ({set_title}, mean over images)")
        return _svg(fig, f"by-{key}" + ("" if split == "test_paired" else f"-{split}"))


def by_area(
    df,
    labels: list[str],
    reference: str | None,
    bins: list[str],
    split: str = "test_paired",
    set_title: str = "synthetic paired occlusions",
) -> str | None:
    """Mean PSNR and SSIM per occluded-area bin of a paired ``split``, one line per method: how quality falls with
    the hole's size."""
    part = df[(df["split"] == split) & (df["area_bin"] != "")] if "area_bin" in df else df.iloc[0:0]
    if part.empty:
        return None
    bins = [b for b in bins if b in set(part["area_bin"])]
    palette = colors(labels)
    x = np.arange(len(bins))
    panels = _panels(part)
    with _figure(5 * len(panels), 3.6, ncols=len(panels)) as (fig, ax):
        for col, (metric, unit) in enumerate(panels):
            axis = ax[0, col]
            means = _finite(part, metric).groupby(["area_bin", "label"])[metric].mean()
            for label in labels:
                if label not in set(part["label"]):
                    continue
                values = [means.get((b, label), np.nan) for b in bins]
                if label == reference:
                    axis.plot(x, values, label=f"input ({reference})", zorder=3, **REFERENCE_STYLE)
                else:
                    axis.plot(x, values, "o-", color=palette[label], markersize=3.5, label=label)
            axis.set_xticks(x, bins)
            axis.set_xlabel("occluded share of the image (true mask)")
            axis.set_ylabel(unit)
        handles, names = ax[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(4, len(names)), frameon=False)
        fig.suptitle(f"{_names(panels)} by occluded area ({set_title}, mean over images)")
        return _svg(fig, "by-area" + ("" if split == "test_paired" else f"-{split}"))


def mask_iou(df) -> str | None:
    """Distribution of per-image mask IoU for every label that predicts a mask, per split with true masks."""
    part = _finite(df, "mask_iou") if "mask_iou" in df else df.iloc[0:0]
    part = part[part["split"] != "test_clean"] if not part.empty else part
    if part.empty:
        return None
    groups = [
        (f"{label} ({SPLIT_NAMES.get(split, split)})", g["mask_iou"].to_numpy())
        for (label, split), g in part.groupby(["label", "split"], sort=True)
    ]
    with _figure(8, 0.9 + 0.4 * len(groups)) as (fig, ax):
        axis = ax[0, 0]
        axis.boxplot([v for _, v in groups], orientation="horizontal", showmeans=True, widths=0.6)
        axis.set_yticks(np.arange(1, len(groups) + 1), [name for name, _ in groups])
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        axis.set_xlabel("mask IoU per image (1 = the predicted mask is the true one; triangle = mean)")
        axis.set_title("Predicted occlusion masks against the true masks")
        return _svg(fig, "mask-iou")


def _smooth(values: np.ndarray) -> np.ndarray:
    window = max(1, len(values) // 40)
    if window == 1:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


TERM_COLUMNS = 5  # loss panels per row
LOG_SPAN = 100.0  # a positive term whose running mean spans more than this factor gets a log axis


def training_losses(curves: dict[str, list[dict[str, float]]]) -> str | None:
    """Small multiples: per trained method a block of panels, one per loss term (its own y scale, the step axis
    shared), each the running mean over 1/40 of the run, so no term hides behind another's scale."""
    curves = {name: rows for name, rows in curves.items() if rows}
    if not curves:
        return None
    terms = {name: list(dict.fromkeys(k for r in rows for k in r if k != "step")) for name, rows in curves.items()}
    shape = {name: (math.ceil(len(t) / TERM_COLUMNS), min(TERM_COLUMNS, len(t))) for name, t in terms.items()}
    heights = [0.45 + 1.55 * nrows for nrows, _ in shape.values()]
    with _canvas(10, sum(heights) + 0.4) as fig:
        blocks = fig.subfigures(len(curves), 1, height_ratios=heights, squeeze=False)[:, 0]
        for block, (name, rows) in zip(blocks, curves.items(), strict=True):
            nrows, ncols = shape[name]
            ax = block.subplots(nrows, TERM_COLUMNS, sharex=True, squeeze=False)
            steps = np.array([r["step"] for r in rows], dtype=float)
            for k, term in enumerate(terms[name]):
                axis = ax[k // TERM_COLUMNS, k % TERM_COLUMNS]
                values = np.array([r.get(term, np.nan) for r in rows], dtype=float)
                smooth = _smooth(values)
                axis.plot(steps[len(steps) - len(smooth) :], smooth, linewidth=1.2, color="tab:blue")
                shown = smooth[np.isfinite(smooth)]
                if len(shown) and shown.min() > 0 and shown.max() > LOG_SPAN * shown.min():
                    axis.set_yscale("log")
                axis.set_title(term, fontsize=9)
                axis.tick_params(labelsize=7)
            for k in range(len(terms[name]), nrows * TERM_COLUMNS):
                ax[k // TERM_COLUMNS, k % TERM_COLUMNS].set_visible(False)
            for col in range(ncols):  # the lowest visible panel of each column carries the step axis
                last = max(r for r in range(nrows) if r * TERM_COLUMNS + col < len(terms[name]))
                ax[last, col].set_xlabel("training step", fontsize=8)
                ax[last, col].xaxis.set_tick_params(labelbottom=True)
            block.suptitle(f"{name}: loss terms per training step", fontsize=10)
        fig.suptitle("Training losses (running mean)")
        return _svg(fig, "losses")


def user_study(rows: list[dict[str, Any]]) -> str | None:
    """Fig. 11: share of "best" votes per method with its Wilson 95% interval."""
    rows = [r for r in rows or [] if r.get("n")]
    if not rows:
        return None
    with _figure(8, 0.9 + 0.45 * len(rows)) as (fig, ax):
        axis = ax[0, 0]
        y = np.arange(len(rows))
        pct = np.array([r["percent"] for r in rows])
        err = np.array([[p - r["ci95_low"], r["ci95_high"] - p] for p, r in zip(pct, rows, strict=True)]).T
        palette = colors([r["method"] for r in rows])
        axis.barh(y, pct, color=[palette[r["method"]] for r in rows], xerr=err, capsize=4)
        axis.set_yticks(y, [r["method"] for r in rows])
        axis.invert_yaxis()
        axis.axvline(100 / len(rows), **REFERENCE_STYLE, label="chance (equal shares)")
        axis.set_xlim(0, 100)
        axis.set_xlabel('share of items voted "best" (%), Wilson 95% interval')
        axis.legend(frameon=False, loc="lower right")
        axis.set_title(f"User study (Fig. 11), {rows[0]['n']} votes")
        return _svg(fig, "user-study")


def identification_rows(identification: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``identification.json``'s rows; a file of the first version (one LightCNN-9, natural probes, no
    intervals: ``{"results": {probe set: {"probes": n, "rank1": ...}}}``) is read into the same shape."""
    results = (identification or {}).get("results") or []
    if isinstance(results, list):
        return results
    model = str(identification.get("model", "LightCNN-9"))
    return [
        {"recognizer": model, "variant": "", "set": "natural", "probes": name, "n": r.get("probes"), "identities": None}
        | {key: value for key, value in r.items() if key.startswith("rank")}
        for name, r in results.items()
    ]


def cmc(identification: dict[str, Any] | None) -> str | None:
    """Fig. 12: identification rate at rank 1..5, one panel per recognizer and training variant, one line per
    probe set (solid: synthetic paired set, dotted: natural occlusions); the occluded input is drawn black."""
    rows = identification_rows(identification)
    if not rows:
        return None
    ranks = np.arange(1, identification.get("max_rank", 5) + 1)

    def draw(axis, row, color, style) -> None:
        label = f"{row['set']}: {row['probes']} (n={row['n']})"
        axis.plot(ranks, [100 * row[f"rank{r}"] for r in ranks], color=color, label=label, markersize=3, **style)

    def frame(axis) -> None:
        axis.set_xticks(ranks)
        axis.set_xlabel("rank")
        axis.set_ylabel("identification rate (%)")

    return _recognizer_panels(rows, draw, frame, "Face identification, CMC (Fig. 12)", "cmc")


def _recognizer_panels(rows: list[dict[str, Any]], draw, frame, title: str, name: str) -> str:
    """One panel per recognizer and training variant, one line per probe set (solid: synthetic paired set,
    dotted: natural occlusions; the occluded input black): the layout the CMC and the ROC share. ``draw(axis, row,
    color, style)`` draws one line, ``frame(axis)`` sets a panel's axes."""
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        panels.setdefault((row["recognizer"], row["variant"]), []).append(row)
    palette = colors(sorted({row["probes"] for row in rows}))
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _figure(10 if ncols > 1 else 6, 3.2 * nrows, ncols=ncols, nrows=nrows) as (fig, ax):
        for k, ((recognizer, variant), members) in enumerate(panels.items()):
            axis = ax[k // ncols, k % ncols]
            for row in members:
                style = {"linestyle": "-" if row["set"] == "synthetic" else ":", "marker": "o"}
                draw(axis, row, "black" if row["probes"] == "occluded input" else palette[row["probes"]], style)
            frame(axis)
            axis.set_ylim(0, 102)
            axis.set_title(f"{recognizer}, {VARIANT_TITLES.get(variant, variant)}")
            axis.legend(frameon=False, fontsize=7, loc="lower right")
        for k in range(len(panels), nrows * ncols):
            ax[k // ncols, k % ncols].set_visible(False)
        fig.suptitle(title)
        return _svg(fig, name)


def roc(identification: dict[str, Any] | None) -> str | None:
    """Verification beside Fig. 12: TAR against FAR (log axis) over all probe x gallery pairs, one panel per
    recognizer and training variant, one line per probe set (styles as in :func:`cmc`), FAR 1e-2 and 1e-3 marked."""
    rows = [r for r in identification_rows(identification) if (r.get("verification") or {}).get("roc")]
    if not rows:
        return None

    def draw(axis, row, color, style) -> None:
        points = np.array(row["verification"]["roc"], dtype=float)
        label = f"{row['set']}: {row['probes']} ({row['verification']['impostor']} impostor pairs)"
        axis.plot(points[:, 0], 100 * points[:, 1], color=color, label=label, markersize=2.5, **style)

    def frame(axis) -> None:
        for far in (1e-2, 1e-3):
            axis.axvline(far, color="grey", linewidth=0.8, alpha=0.6)
        axis.set_xscale("log")
        axis.set_xlabel("false accept rate (impostor pairs accepted)")
        axis.set_ylabel("true accept rate (%)")

    return _recognizer_panels(rows, draw, frame, "Face verification, ROC (probes against the gallery)", "roc")


def significance(panels: list[dict[str, Any]]) -> str | None:
    """Critical-difference style chart: one row per method (its name on the left, its group letters on the
    right, both on the row of its dot at its mean per-image rank, 1 = best); under the rows a bar joins the
    members of each group of more than one method, so methods under no common bar differ."""
    panels = [p for p in panels if p["ranks"]]
    if not panels:
        return None

    def shared(letters: dict[str, str]) -> list[str]:
        """Group letters held by more than one method: those get a bar."""
        return [g for g in sorted(set("".join(letters.values()))) if sum(g in v for v in letters.values()) > 1]

    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    tallest = max(len(p["ranks"]) + 0.5 * len(shared(p["letters"])) for p in panels)
    with _figure(10, nrows * (1.1 + 0.3 * tallest), ncols=ncols, nrows=nrows) as (fig, ax):
        for k, panel in enumerate(panels):
            axis = ax[k // ncols, k % ncols]
            ranks, letters = panel["ranks"], panel["letters"]
            order = sorted(ranks, key=ranks.get)
            rows = np.arange(len(order))
            axis.plot([ranks[label] for label in order], rows, "o", color="black", markersize=4)
            axis.set_yticks(rows, order)
            right = axis.secondary_yaxis("right")
            right.set_yticks(rows, [letters.get(label, "") for label in order])
            right.tick_params(length=0)
            right.set_ylabel("group")
            for g, letter in enumerate(shared(letters)):
                xs = [ranks[label] for label in order if letter in letters.get(label, "")]
                level = len(order) - 0.4 + 0.5 * g
                axis.plot([min(xs), max(xs)], [level, level], color="tab:blue", linewidth=3, solid_capstyle="round")
                axis.plot(xs, [level] * len(xs), "o", color="tab:blue", markersize=3)
                axis.annotate(letter, (max(xs), level), xytext=(8, 0), textcoords="offset points", va="center")
            axis.set_ylim(len(order) - 0.6 + 0.5 * len(shared(letters)), -0.6)  # inverted: the best rank on top
            axis.set_xlim(0.5, len(order) + 0.5)
            axis.grid(axis="y", alpha=0)
            axis.set_xlabel(f"mean rank over {panel['n']} images (1 = best {panel['unit']})")
            axis.set_title(panel["title"])
        for k in range(len(panels), nrows * ncols):
            ax[k // ncols, k % ncols].set_visible(False)
        fig.suptitle("Ranking: bars join methods that no Wilcoxon test (Holm, alpha 0.05) tells apart")
        return _svg(fig, "significance")
