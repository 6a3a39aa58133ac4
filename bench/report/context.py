"""Everything the report shows about one run, computed from its folder alone (no model needed).

Sections mirror the paper: Table III (PSNR/SSIM per method beside the reported numbers and the significance
groups), Table IV (ablation variants), paired differences, mask quality and the Fig. 9 property (clean faces
left alone), breakdowns by occluder family and occluded-area bin, the Fig. 7 block (mask-free methods side by
side with their predicted masks), qualitative grids (Figs. 6, 10) and charts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.evaluation import fed_mask
from bench.io import png_data_uri, read_json, read_png
from bench.planning import ORACLE, RunConfig
from bench.report import charts, paired
from bench.runstore import REPORTED_FIELDS, RunStore, summarize

SPLIT_TITLES = {
    "test_paired": "synthetic paired occlusions",
    "test_natural": "natural occlusions",
    "test_clean": "faces without occlusion",
}
QUALITY = [("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3)]
MASKS = [("mask_iou", "mask IoU", 3), ("mask_f1", "mask F1", 3)]
# bench.measures' per-image columns: a table leaves out a column no row has (a run without their files)
MEASURED = [("lpips", "LPIPS-VGG", 3), ("lpips_alex", "LPIPS-Alex", 3), ("lmd", "LMD (px)", 2)]
USER_PAIRED = QUALITY + [("region_psnr", "occluded-region PSNR (dB)", 2)] + MEASURED + MASKS  # a --paired-folder split
UNTRAINED = ("not trainable", "external")  # what the manifest's training record says of a label nothing trained


def user_paired_titles(manifest: dict[str, Any]) -> dict[str, str]:
    """A title per paired folder the run scored (``--paired-folder``): its folder and how its masks came."""
    paired_sets = ((manifest.get("data") or {}).get("info") or {}).get("paired") or {}
    return {
        split: f"your paired set {split} ({facts.get('folder')}; masks: {facts.get('masks')})"
        for split, facts in sorted(paired_sets.items())
    }


PERCENT = {"occluded_fraction", "out_of_range"}  # shares of pixels, shown as percentages
REFERENCE_CHECK = 8  # samples compared to decide that a label returns its input


def shown(metric: str, value: float | None) -> float | None:
    """A metric's value as the report shows it: shares of pixels in percent."""
    return None if value is None else value * (100.0 if metric in PERCENT else 1.0)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def summary_value(summary, label: str, split: str, column: str) -> float | None:
    """One cell (e.g. ``psnr_mean``) of a ``summarize`` table for a label and split, None when absent."""
    if summary.empty or column not in summary:
        return None
    row = summary[(summary["label"] == label) & (summary["split"] == split)]
    return _number(row[column].iloc[0]) if len(row) else None


def table(
    summary,
    split: str,
    columns: list[tuple[str, str, int]],
    reported: dict[str, dict],
    letters=None,
    reference: str | None = None,
) -> dict:
    """Rows of ``summary`` for ``split``: mean ± std per column as text and as numbers (shares of pixels in
    percent), the paper's numbers (once per method) and the significance letters of each compared metric.
    The reference label (the input) is the last row, marked ``input``; columns no row has a value in are left
    out, and so are rows without any value (e.g. mask scores of a method that predicts no mask)."""
    rows, seen = [], set()
    part = summary[summary["split"] == split] if not summary.empty else summary
    for _, r in part.iterrows():
        r = r.to_dict()
        values = [
            (shown(c, _number(r.get(f"{c}_mean"))), shown(c, _number(r.get(f"{c}_std")) or 0.0)) for c, _, _ in columns
        ]
        if all(mean is None for mean, _ in values):
            continue
        paper = reported.get(r["method"], {}) if r["method"] not in seen else {}
        seen.add(r["method"])
        rows.append(
            {
                "label": r["label"],
                "input": r["label"] == reference,
                "method": r["method"],
                "mask": r["mask_source"],
                "n": int(r["n"]),
                "values": values,
                "paper": [_number(paper.get(c)) for c, _, _ in columns],
                "groups": {m: g["letters"].get(r["label"], "") for m, g in (letters or {}).items()},
            }
        )
    rows.sort(key=lambda row: row["input"])  # stable: the input last, the others in label order
    keep = [i for i in range(len(columns)) if any(row["values"][i][0] is not None for row in rows)]
    columns = [columns[i] for i in keep]
    for row in rows:
        row["values"] = [row["values"][i] for i in keep]
        row["paper"] = [row["paper"][i] for i in keep]
        row["cells"] = [
            "–" if m is None else f"{m:.{d}f} ± {s:.{d}f}"
            for (m, s), (_, _, d) in zip(row["values"], columns, strict=True)
        ]
        row["paper_cells"] = [
            "" if v is None else fmt(v, d) for v, (_, _, d) in zip(row["paper"], columns, strict=True)
        ]
    return {"headers": [h for _, h, _ in columns], "columns": columns, "rows": rows, "grouped": list(letters or {})}


def with_sets(t: dict, sets: dict[str, dict], split: str) -> dict:
    """``t`` with FID and KID columns for ``split`` from the run's set measures (:func:`bench.measures.read_sets`),
    where any row has them: each cell states its N (FID is biased at small N) and KID its std over subsets."""
    found = [(sets.get(r["label"]) or {}).get(split) or {} for r in t["rows"]]
    if not any("fid" in f for f in found):
        return t
    rows = []
    for r, f in zip(t["rows"], found, strict=True):
        n = f"N={f.get('n')} vs {f.get('n_reference')}" if f else ""
        if "fid" in f:
            values = [(f["fid"], None), (f["kid_mean"], f["kid_std"])]
            cells = [f"{f['fid']:.2f} ({n})", f"{f['kid_mean']:.4f} ± {f['kid_std']:.4f} ({n})"]
        else:
            values, cells = [(None, None)] * 2, [f.get("not_computed", "–")] * 2
        extra = {"values": r["values"] + values, "cells": r["cells"] + cells, "paper": r["paper"] + [None, None]}
        rows.append({**r, **extra, "paper_cells": r["paper_cells"] + ["", ""]})
    columns = [*t["columns"], ("fid", "FID", 2), ("kid", "KID", 4)]
    return {**t, "columns": columns, "headers": [h for _, h, _ in columns], "rows": rows}


def current_sets(store: RunStore, df) -> dict[str, dict]:
    """The run's stored FID/KID (:func:`bench.measures.read_sets`) whose restorations are still the rows' images
    (a label rescored since keeps no stale distance)."""
    from bench.measures import read_sets
    from bench.measures.fid import rows_digest

    out: dict[str, dict] = {}
    for label, per in read_sets(store).items():
        for split, scores in (per or {}).items():
            rows = df[(df["label"] == label) & (df["split"] == split)] if not df.empty else df
            if len(rows) and rows_digest(rows[["sample", "png_sha256"]].to_dict("records")) == scores.get("digest"):
                out.setdefault(label, {})[split] = scores
    return out


def measures_view(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """The report header's line per measure: what it is (its convention and file), or not computed and why."""
    from bench.measures import not_computed

    view = []
    for entry in (manifest.get("measures") or {}).values():
        if entry.get("status") == "computed":
            conv = "; ".join(f"{k}: {v}" for k, v in (entry.get("convention") or {}).items())
            file = entry.get("file") or {}
            where = f"; file {file.get('path')} ({file.get('size')} bytes, sha256 {file.get('sha256')})" if file else ""
            view.append({"title": entry.get("title", "?"), "text": conv + where})
        else:
            view.append({"title": entry.get("title", "?"), "text": not_computed(entry)})
    return view


def _breakdown(
    df, key: str, metric: str = "psnr", splits: tuple[str, ...] = ("test_paired",), reference: str | None = None
) -> dict:
    """Mean ``metric`` on ``splits``: one row per ``key`` value, one column per label (the input's last)."""
    part = df[df["split"].isin(splits) & np.isfinite(df[metric])] if metric in df else df.iloc[0:0]
    if part.empty:
        return {"columns": [], "rows": []}
    means = part.pivot_table(index=key, columns="label", values=metric, aggfunc="mean")
    means = means[sorted(means.columns, key=lambda label: label == reference)]
    counts = part.groupby(key)["sample"].nunique()
    lo, hi = float(means.min().min()), float(means.max().max())
    rows = []
    for value, row in means.iterrows():
        cells = []
        for label in means.columns:
            v = row[label]
            width = 0 if math.isnan(v) or hi == lo else 100 * (v - lo) / (hi - lo)
            cells.append({"text": fmt(v, 2), "width": round(width)})
        rows.append({"label": f"{value} (n={counts[value]})", "cells": cells})
    return {"columns": [f"{c} (input)" if c == reference else str(c) for c in means.columns], "rows": rows}


def _png_uri(image: np.ndarray) -> str:
    import base64

    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError("could not encode a mask for the report")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def fed_mask_uri(store: RunStore, source: str, split: str, sid: str, threshold: float) -> str | None:
    """The mask a mask-fed label was given for one sample (:func:`bench.evaluation.fed_mask`), as a data URI; None
    when the run folder does not hold what it was built from."""
    needed = [store.input_path(split, "input", sid)]
    if source != ORACLE:
        needed.append(store.prediction_path(source, split, sid, mask=True))
    elif split != "test_clean":
        needed.append(store.input_path(split, "mask", sid))
    if not all(p.exists() for p in needed):
        return None
    size = read_png(needed[0]).shape[0]
    true = lambda: (read_png(store.input_path(split, "mask", sid)) > 127).astype(np.uint8)  # noqa: E731 - stored 0/255
    return _png_uri(fed_mask(store, source, split, sid, threshold, size, true) * 255)


def grid(
    store: RunStore,
    df,
    split: str,
    labels: list[str],
    examples: int,
    reference: str | None,
    threshold: float,
) -> dict:
    """One column per sample (the first ``examples``), one row per image kind: the input and its true mask,
    each label's output with the mask it predicted or was fed beneath it, and the ground truth. A row of
    masks is left out where no sample has one."""
    part = df[df["split"] == split] if not df.empty else df
    samples = sorted(part["sample"].unique())[:examples] if not part.empty else []
    if not samples or not labels:
        return {"samples": [], "headers": [], "rows": []}
    sources = part.groupby("label")["mask_source"].first().to_dict()

    def row(label: str, note: str, kind: str, cells: list[str | None]) -> list[dict]:
        return [{"label": label, "note": note, "kind": kind, "cells": cells}] if any(cells) else []

    rows = row("input", "", "image", [png_data_uri(store.input_path(split, "input", s)) for s in samples])
    rows += row("", "true mask", "mask", [png_data_uri(store.input_path(split, "mask", s)) for s in samples])
    for label in labels:
        name = f"{label} (input)" if label == reference else label
        rows += row(name, "", "image", [png_data_uri(store.prediction_path(label, split, s)) for s in samples])
        source = sources.get(label, "own")
        if source != "own":
            note = "fed: true mask" if source == ORACLE else f"fed: {source}'s mask binarised at {threshold:g}"
            rows += row("", note, "mask", [fed_mask_uri(store, source, split, s, threshold) for s in samples])
        else:
            masks = [png_data_uri(store.prediction_path(label, split, s, mask=True)) for s in samples]
            rows += row("", "predicted mask", "mask", masks)
    rows += row("ground truth", "", "image", [png_data_uri(store.input_path(split, "gt", s)) for s in samples])
    families = part.groupby("sample")["family"].first().to_dict() if "family" in part else {}
    headers = [(families.get(s) or str(k)).split("/")[-1] for k, s in enumerate(samples, 1)]  # natural/x: x
    return {"samples": samples, "headers": headers, "rows": rows}


def reference_label(store: RunStore, df, specs: dict[str, dict], trainable: dict[str, bool]) -> str | None:
    """The label whose output is its input (e.g. a method registered as the floor), found by looking: a
    mask-free, untrained label whose saved outputs equal the stored inputs pixel for pixel."""
    samples = sorted(df[df["split"] == "test_paired"]["sample"].unique())[:REFERENCE_CHECK] if not df.empty else []
    for label in sorted(set(df["label"])) if samples else []:
        if specs.get(label, {}).get("needs_mask", True) or trainable.get(label, True):
            continue
        outputs = [store.prediction_path(label, "test_paired", sid) for sid in samples]
        if all(p.exists() for p in outputs) and all(
            np.array_equal(read_png(p), read_png(store.input_path("test_paired", "input", sid)))
            for p, sid in zip(outputs, samples, strict=True)
        ):
            return label
    return None


def _training_curves(store: RunStore, names: list[str]) -> dict[str, list[dict[str, float]]]:
    """Each trained method's ``training/<method>.jsonl`` (one line per step); damaged lines are skipped."""
    import json

    curves = {}
    for name in names:
        path = store.root / "training" / f"{name}.jsonl"
        if not path.exists():
            continue
        rows = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
        curves[name] = rows
    return curves


def fig7(
    store: RunStore, df, summary, methods: list[str], reference: str | None, examples: int, threshold: float
) -> dict | None:
    """The paper's unpaired comparison (Fig. 7): mask-free trained methods side by side on natural and
    synthetic occlusions, their predicted masks, and one table of what they do to paired, natural and clean
    faces (Fig. 9)."""
    if not methods:
        return None
    splits = [s for s in ("test_natural", "test_paired") if not df.empty and (df["split"] == s).any()]
    grids = [
        {"split": s, "title": SPLIT_TITLES[s], **grid(store, df, s, methods, examples, reference, threshold)}
        for s in splits
    ]

    columns = []
    for split in splits:
        name = "synthetic" if split == "test_paired" else "natural"
        columns += [(split, m, f"{name} {h}", d) for m, h, d in QUALITY + [("region_psnr", "occl. PSNR", 2)] + MASKS]
    columns += [
        ("test_clean", "psnr", "clean-face PSNR (dB)", 2),
        ("test_clean", "occluded_fraction", "clean pixels marked occluded (%)", 2),
    ]
    rows = []
    for label in [*methods, *([reference] if reference else [])]:
        cells = [
            fmt(shown(metric, summary_value(summary, label, split, f"{metric}_mean")), d)
            for split, metric, _, d in columns
        ]
        rows.append({"label": label + (" (input, reference)" if label == reference else ""), "cells": cells})
    keep = [i for i in range(len(columns)) if any(r["cells"][i] != "–" for r in rows)]
    return {
        "grids": grids,
        "headers": [columns[i][2] for i in keep],
        "rows": [{"label": r["label"], "cells": [r["cells"][i] for i in keep]} for r in rows],
    }


def _interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    if _number(value) is None:
        return "–"
    return f"{value:.{digits}f} [{fmt(low, digits)}, {fmt(high, digits)}]"


def _tar(at: dict) -> str:
    """TAR at one FAR as a cell: the rate, or why it was not measured."""
    return fmt(at.get("tar"), 3) if at.get("tar") is not None else at.get("note", "–")


def _frechet(found: dict | None) -> str:
    """A Fréchet distance cell with its N and dimension (it is biased at small N)."""
    if not found:
        return "–"
    value = fmt(found.get("value"), 3) if found.get("value") is not None else found.get("note", "–")
    return f"{value} (N={found.get('n')} vs {found.get('reference_n')}, d={found.get('dim')})"


def identification_view(store: RunStore, identification: dict | None) -> dict | None:
    """Fig. 12's table (each rank with its 95% interval, n, the identity similarity on the paired set) and
    Fig. 13's triplets (input, mask, each restoration, the gallery image of that person)."""
    rows = charts.identification_rows(identification)
    if not rows:
        return None

    max_rank = identification.get("max_rank", 5)
    ranks = range(1, max_rank + 1)
    table = []
    for r in rows:
        sim, deg = r.get("similarity") or {}, r.get("angle") or {}
        table.append(
            {
                "model": f"{r['recognizer']}, {charts.VARIANT_TITLES.get(r['variant'], r['variant'])}",
                "set": r["set"],
                "probes": r["probes"],
                "n": f"{r['n']}" + (f" ({r['identities']})" if r.get("identities") else ""),
                "ranks": [_interval(r.get(f"rank{k}"), r.get(f"rank{k}_low"), r.get(f"rank{k}_high")) for k in ranks],
                "similarity": _interval(sim.get("mean"), sim.get("low"), sim.get("high")),
                "angle": _interval(deg.get("mean"), deg.get("low"), deg.get("high"), 1),
                "tar": [_tar(at) for at in (r.get("verification") or {}).get("at", [])],
                "frechet": _frechet(r.get("frechet")),
            }
        )
    fars = next((r["verification"]["at"] for r in rows if r.get("verification")), [])
    labels = identification.get("labels", [])
    triplets = []
    for e in identification.get("examples", []):
        sid = e["sample"]
        cells = [png_data_uri(store.input_path("test_paired", kind, sid)) for kind in ("input", "mask")]
        cells += [png_data_uri(store.prediction_path(label, "test_paired", sid)) for label in labels]
        cells.append(png_data_uri(store.root / "identification" / "gallery" / f"{e['gallery']}.png"))
        triplets.append({"sample": sid, "cells": cells})
    gallery = identification.get("gallery")
    if isinstance(gallery, dict):
        gallery = f"{gallery.get('identities')} identities, one clean image each (seed {gallery.get('seed')})"
    return {
        "ranks": list(ranks),
        "fars": [f"{at['far']:.0e}".replace("e-0", "e-") for at in fars],
        "rows": table,
        "gallery": gallery,
        "split": identification.get("split"),
        "models": identification.get("models", []),
        "columns": ["input", "mask", *labels, "gallery image of the person"],
        "triplets": triplets,
    }


def _ablations(table3: dict, specs: dict[str, dict]) -> list[dict]:
    """Table IV: for each method that has registered variants, Table III's rows of it and its variants (shown
    only when there is something to compare: two rows or more)."""
    variant_of = {label.split("@")[0]: spec.get("variant_of", "") for label, spec in specs.items()}
    ablations = []
    for base in sorted({v for v in variant_of.values() if v}):
        rows = [r for r in table3["rows"] if base in (r["method"], variant_of.get(r["method"]))]
        if len(rows) > 1:
            ablations.append({**table3, "base": base, "rows": rows})
    return ablations


def _out_of_range(df) -> dict[str, float]:
    """Each label's mean share of output pixels outside [0, 1] (clamped for the PNG), in percent, where above 0."""
    if "out_of_range" not in df:
        return {}
    means = df.groupby("label")["out_of_range"].mean()
    return {label: shown("out_of_range", float(v)) for label, v in means.items() if v > 0}


def _split_tables(summary, reference: str | None, sets: dict[str, dict]) -> dict[str, dict]:
    """The tables beside Table III: natural occlusions, clean faces (Fig. 9) and mask quality on the paired set."""
    return {
        "natural": with_sets(
            table(summary, "test_natural", QUALITY + MEASURED + MASKS, {}, reference=reference), sets, "test_natural"
        ),
        "clean": with_sets(
            table(
                summary,
                "test_clean",
                QUALITY + MEASURED + [("occluded_fraction", "pixels marked occluded (%)", 2)],
                {},
                reference=reference,
            ),
            sets,
            "test_clean",
        ),
        "masks": table(summary, "test_paired", MASKS, {}),
    }


def _breakdowns(df, reference: str | None) -> dict[str, dict]:
    """PSNR by occluder family and by occluded-area bin, and mask IoU by family."""
    return {
        "by_family": _breakdown(df, "family", reference=reference) if not df.empty else {"columns": [], "rows": []},
        "by_area": _breakdown(df, "area_bin", reference=reference) if not df.empty else {"columns": [], "rows": []},
        # paired and natural families side by side: a mask head that learned the synthetic pastes, not occluders,
        # scores high on the paired family and low on its natural twin
        "iou_by_family": _breakdown(df, "family", "mask_iou", ("test_paired", "test_natural"))
        if not df.empty
        else {"columns": [], "rows": []},
    }


def _charts(
    store: RunStore,
    df,
    labels: list[str],
    reference: str | None,
    compared: dict,
    training: dict[str, dict],
    study: Any,
    identification: dict | None,
    titles: dict[str, str],
) -> dict[str, str]:
    """Every chart that has something to draw, as inline SVG by name."""
    from bench.metrics import AREA_BINS, area_bin

    area_order = [area_bin(lo) for lo in AREA_BINS[:-1]]
    significance = [
        {
            "title": f"{paired.METRICS[m][0]}, {titles[split]}",
            "unit": paired.METRICS[m][0],
            "ranks": c["ranks"],
            "letters": c["letters"],
            "n": c["n_complete"],
        }
        for split, per in compared.items()
        for m, c in per.items()
    ]
    names = [name for name, t in training.items() if t.get("trained") not in UNTRAINED]
    figures = {
        "significance": charts.significance(significance),
        "family": charts.by_group(df, "family", "occluder family", labels, reference) if not df.empty else None,
        "area": charts.by_area(df, labels, reference, area_order) if not df.empty else None,
        "mask_iou": charts.mask_iou(df) if not df.empty else None,
        "losses": charts.training_losses(_training_curves(store, names)),
        "study": charts.user_study(study),
        "cmc": charts.cmc(identification),
        "roc": charts.roc(identification),
    }
    for split in titles.keys() - SPLIT_TITLES.keys():  # each --paired-folder split: the synthetic split's charts
        if df.empty:
            break
        figures |= _user_paired_charts(df, split, labels, reference, area_order)
    return {name: svg for name, svg in figures.items() if svg}


def _user_paired_charts(df, split: str, labels: list[str], reference: str | None, bins: list[str]) -> dict:
    """A --paired-folder split's charts, named by its split: by occluded area where it has masks (given or
    derived), by occluder family only where its rows name more than one (a user folder's pairs are all family
    ``user`` unless an import or a future layout says otherwise)."""
    families = set(df.loc[df["split"] == split, "family"]) if "family" in df else set()
    out = {f"area_{split}": charts.by_area(df, labels, reference, bins, split=split, set_title=f"your set {split}")}
    if len(families - {""}) > 1:
        out[f"family_{split}"] = charts.by_group(
            df, "family", "occluder family", labels, reference, split=split, set_title=f"your set {split}"
        )
    return out


def run_context(store: RunStore, examples: int) -> dict[str, Any]:
    """Everything the template, the exports and the terminal summary need about one run."""
    from bench.metrics import area_bin

    manifest = store.manifest(REPORTED_FIELDS)
    df = store.frame(verify=True)  # every row, image and evaluated label checked against what was recorded
    summary = summarize(df)
    facts = manifest.get("methods", {})
    specs = {label: f.get("spec", {}) for label, f in facts.items()}
    training = manifest.get("training", {})
    trainable = {label: training.get(label.split("@")[0], {}).get("trained") not in UNTRAINED for label in facts}
    if not df.empty and "area" in df:
        df["area_bin"] = df["area"].map(lambda a: area_bin(a) if a is not None and not math.isnan(a) else "")
    reported = {label.split("@")[0]: spec.get("reported", {}) for label, spec in specs.items()}
    labels = store.labels()
    titles = {**SPLIT_TITLES, **user_paired_titles(manifest)}
    compared = paired.comparisons(df, (*paired.SPLITS, *titles.keys() - SPLIT_TITLES.keys()))
    reference = reference_label(store, df, specs, trainable)
    threshold = float(manifest.get("config", {}).get("mask_threshold", RunConfig.mask_threshold))
    sets = current_sets(store, df)  # FID/KID per label and split, where the run computed them
    table3 = table(
        summary,
        "test_paired",
        QUALITY + [("region_psnr", "occluded-region PSNR (dB)", 2)] + MEASURED,
        reported,
        compared.get("test_paired"),
        reference,
    )
    table3 = with_sets(table3, sets, "test_paired")
    ablations = _ablations(table3, specs)
    out_of_range = _out_of_range(df)
    mask_free = [label for label in labels if not specs.get(label, {}).get("needs_mask", True) and trainable[label]]
    study = read_json(store.root / "user_study" / "results.json")
    identification = read_json(store.root / "identification.json")
    figures = _charts(store, df, labels, reference, compared, training, study, identification, titles)
    return {
        "id": manifest.get("run_id", store.root.name),
        "root": str(store.root),
        "manifest": manifest,
        "summary": summary,
        "labels": labels,
        "reference": reference,
        "table3": table3,
        "ablations": ablations,
        "paired": [
            {
                "split": split,
                "title": titles[split],
                "rows": paired.pair_rows(per),
                "metrics": [(m, "PSNR (dB)" if m == "psnr" else paired.METRICS[m][0]) for m in per],
            }
            for split, per in compared.items()
        ],
        "compared": compared,
        "out_of_range": out_of_range,
        **_split_tables(summary, reference, sets),
        "sets": sets,
        "measures": measures_view(manifest),
        "user_paired": [
            {
                "split": split,
                "title": title,
                **with_sets(table(summary, split, USER_PAIRED, {}, compared.get(split), reference), sets, split),
                "by_area": _breakdown(df, "area_bin", splits=(split,), reference=reference)
                if not df.empty and "area_bin" in df
                else {"columns": [], "rows": []},
            }
            for split, title in titles.items()
            if split not in SPLIT_TITLES
        ],
        "not_scored": {label: f["not_scored"] for label, f in facts.items() if f.get("not_scored")},
        **_breakdowns(df, reference),
        "fig7": fig7(store, df, summary, mask_free, reference, examples, threshold),
        "grids": [
            {"split": s, "title": titles[s], **grid(store, df, s, labels, examples, reference, threshold)}
            for s in titles
        ],
        "charts": figures,
        "study": study,
        "identification": identification,
        "id_view": identification_view(store, identification),
        "failed": {k: v.get("error") for k, v in facts.items() if v.get("status") == "failed"},
    }
