"""The end-of-run terminal table: at 80 columns every column and every name of a large run shows, uncut, the
input is the last row and marked, and the table says what "±" means."""

import io

import numpy as np
import pandas as pd
import pytest

# docs/scale.md's full paper-profile run (nine methods, telea and identity; masks from oagan and gt) plus the
# longest built-in label, an OA-GAN ablation variant
MASK_FREE = ["oagan", "oagan:pretrain_finetune", "cyclegan", "ganimation", "selfreg", "identity"]
MASK_FED = [f"{m}@{s}" for m in ("pconv", "csa", "gfc", "gnipt", "yeh", "telea") for s in ("oagan", "gt")]
PREDICTS = {"oagan", "oagan:pretrain_finetune", "ganimation", "selfreg"}


def _frame(labels: list[str], n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Per-image rows as a run folder holds them: means spread over 8 dB so the groups are many and long."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, label in enumerate(labels):
        method, _, source = label.partition("@")
        for i in range(n):
            psnr = 18 + 8 * k / len(labels) + rng.normal(0, 3)
            rows.append(
                {
                    "label": label,
                    "method": method,
                    "mask_source": source or "own",
                    "split": "test_paired",
                    "sample": f"test_paired-{i:05d}",
                    "psnr": psnr,
                    "ssim": 0.6 + 0.01 * psnr + rng.normal(0, 0.02),
                    "mask_iou": rng.uniform(0.3, 0.7) if label in PREDICTS else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _context(labels: list[str], reference: str | None, failed: dict[str, str]) -> dict:
    from bench.report import paired
    from bench.runstore import summarize

    df = _frame(labels)
    return {
        "id": "20261201-000000-0123abcd",
        "manifest": {"status": "complete"},
        "summary": summarize(df),
        "labels": labels,
        "failed": failed,
        "reference": reference,
        "compared": paired.comparisons(df),
    }


def _printed(ctx: dict, width: int = 80) -> str:
    from pathlib import Path

    from rich.console import Console

    from bench.report.terminal import print_run

    buf = io.StringIO()
    print_run(Console(file=buf, width=width), ctx, Path("/results/runs/x/report.html"))
    return buf.getvalue()


@pytest.mark.parametrize("failed", [{}, {"gnipt@gt": "out of memory"}])
def test_a_large_run_fits_80_columns_with_nothing_cut(failed):
    labels = sorted(MASK_FREE + MASK_FED)
    text = _printed(_context(labels, "identity", failed))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in text and "not shown" not in text  # no name cut, no column left out
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    header = [line.split() for line in lines[1:rule]]  # headers wrap at spaces, over two lines here
    words = " ".join(" ".join(line) for line in header)
    for word in ("method", "PSNR", "(dB)", "± std", "SSIM", "mask", "IoU", "group", "note"):
        assert word in words, word
    assert words.count("group") == 2 and header[-1][0] == "method"
    table = [line for line in lines if line.split() and line.split()[0] in labels]
    assert [line.split()[0] for line in table] == [label for label in labels if label != "identity"] + ["identity"]
    assert table[-1].split()[-1] == "input"  # the input: the last row, marked
    if failed:
        assert "failed" in next(line for line in table if line.startswith("gnipt@gt")).split()
        assert "failed: gnipt@gt: out of memory" in text


def test_the_table_says_what_plus_minus_is_and_shows_the_standard_deviation():
    ctx = _context(["identity", "oagan", "telea@oagan"], "identity", {})
    text = _printed(ctx)
    assert "± is the standard deviation over images" in " ".join(text.split())
    std = ctx["summary"].set_index("label").loc["telea@oagan", "psnr_std"]
    row = next(line for line in text.splitlines() if line.startswith("telea@oagan"))
    assert row.split()[2] == f"±{std:.2f}"  # the standard deviation, not the 95% interval's half-width
    assert f"±{ctx['summary'].set_index('label').loc['telea@oagan', 'psnr_ci95']:.2f}" not in row


def test_without_a_reference_the_table_says_it_has_no_input_row():
    text = " ".join(_printed(_context(["oagan", "pconv@oagan"], None, {})).split())
    assert "No input row: no label returns its input." in text and "the occluded input itself" not in text
