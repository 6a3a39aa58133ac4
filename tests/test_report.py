"""The report: paired statistics (against hand-computed cases and SciPy), charts, runs side by side, LaTeX,
Markdown and results.json exports, terminal output that fits 80 columns, and the page in headless Chromium."""

import io
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench import stats
from tests.util import render_in_chromium, tiny_plugin_env

BENCH = [sys.executable, "-m", "bench.cli"]
RUN = [
    "run",
    "--methods",
    "identity,telea,tinyfill,tinymask",
    "--mask-source",
    "gt,tinymask",
    "--limit",
    "12",
    "--data-limit",
    "40",
]
LABELS = {"identity", "tinymask", "telea@gt", "telea@tinymask", "tinyfill@gt", "tinyfill@tinymask"}


# -- statistics ----------------------------------------------------------------------------------------------
def test_holm_matches_a_hand_computation():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone: 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_wilcoxon_matches_a_hand_computation_and_scipy():
    # d = 1, 2, -3, 4, 5: W- = 3; of the 32 sign patterns 5 have a rank sum <= 3 -> p = 2 * 5 / 32
    d = np.array([1.0, 2.0, -3.0, 4.0, 5.0])
    assert stats.wilcoxon_p(d) == pytest.approx(2 * 5 / 32)
    rng = np.random.default_rng(1)
    distinct = rng.normal(0.3, 1.0, 40)
    assert stats.wilcoxon_p(distinct) == pytest.approx(scipy_stats.wilcoxon(distinct).pvalue)  # exact, as auto
    large = rng.normal(0.1, 1.0, 200)
    assert stats.wilcoxon_p(large) == pytest.approx(scipy_stats.wilcoxon(large).pvalue)


def test_ties_and_zeros_use_scipys_tie_corrected_normal_approximation():
    d = np.array([0.0, 0.0, 0.5, 0.5, 0.5, 1.0, -0.5, 1.0, 2.0, 0.5, 1.5, -1.0, 0.5, 2.0, 1.0, 0.0, 0.5])
    expected = scipy_stats.wilcoxon(d, method="asymptotic").pvalue
    assert stats.wilcoxon_p(d) == pytest.approx(expected)
    assert 0 < expected < 0.05


def test_a_known_difference_is_found_and_its_interval_agrees_with_scipys_bootstrap():
    rng = np.random.default_rng(0)
    b = rng.normal(20, 3, 150)
    shift = rng.normal(0.5, 0.2, 150)
    d = stats.paired_difference(b + shift, b, ("a", "b"))
    assert d.n == 150 and d.mean == pytest.approx(shift.mean())
    assert d.low < shift.mean() < d.high and d.p < 1e-10
    ref = scipy_stats.bootstrap((shift,), np.mean, method="percentile", n_resamples=2000, random_state=0)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert d.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
    assert d.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)


def test_identical_methods_give_no_difference():
    a = np.array([20.0, 21.5, 19.0, 25.0, math.inf, 22.0])
    (d,) = stats.compare_all({"x": a, "y": a.copy()})
    assert (d.n, d.mean, d.low, d.high, d.p, d.p_holm) == (5, 0.0, 0.0, 0.0, 1.0, 1.0)  # inf pairs left out
    assert not d.significant
    assert stats.compact_letters(["x", "y"], set()) == {"x": "a", "y": "a"}


def test_a_constant_difference_has_a_zero_width_interval():
    a = np.linspace(10, 20, 30)
    d = stats.paired_difference(a + 1.0, a)
    assert (d.mean, d.low, d.high) == pytest.approx((1.0, 1.0, 1.0))
    assert d.p < 1e-6


def test_compact_letters_hand_computed():
    # means a > b > c, only a and c differ: b shares a letter with each
    assert stats.compact_letters(["a", "b", "c"], {frozenset("ac")}) == {"a": "a", "b": "ab", "c": "b"}
    every = {frozenset(p) for p in ("ab", "ac", "bc")}
    assert stats.compact_letters(["a", "b", "c"], every) == {"a": "a", "b": "b", "c": "c"}
    # Piepho's non-contiguous case: 1-3 and 2-4 differ -> groups {1,2}, {1,4}, {2,3}... as maximal sets
    letters = stats.compact_letters(["1", "2", "3", "4"], {frozenset("13"), frozenset("24")})
    groups = {frozenset(k for k, v in letters.items() if g in v) for g in set("".join(letters.values()))}
    assert groups == {frozenset("12"), frozenset("14"), frozenset("23"), frozenset("34")}


def test_mean_ranks_share_ties():
    ranks = stats.mean_ranks({"a": np.array([3.0, 1.0]), "b": np.array([3.0, 2.0]), "c": np.array([1.0, np.nan])})
    assert ranks == {"a": 1.5, "b": 1.5, "c": 3.0}  # the second image is left out: c has no value there


def test_spread_across_seeds():
    assert stats.spread([22.0, 24.0]) == pytest.approx((23.0, math.sqrt(2)))
    assert stats.spread([22.0]) == (22.0, 0.0)


# -- terminal ------------------------------------------------------------------------------------------------
def _render(columns, rows, width=80) -> str:
    from rich.console import Console

    from bench.report.terminal import print_table

    buf = io.StringIO()
    print_table(Console(file=buf, width=width), "title", columns, rows)
    return buf.getvalue()


def test_tables_fit_80_columns_by_dropping_columns_never_names():
    from bench.report.terminal import Column

    columns = [Column("method", right=False)] + [Column(f"metric number {i} (unit)", 10 - i) for i in range(8)]
    rows = [["oagan:pretrain_finetune@gt", *[f"{1000 * i:.3f}" for i in range(8)]], ["identity", *["1"] * 8]]
    text = _render(columns, rows)
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text and "oagan:pretrain_finetune@gt" in text
    assert "not shown at 80 columns: metric number 7 (unit)" in " ".join(text.split())
    wide = _render(columns, rows, width=200)
    assert "not shown" not in wide and "7000.000" in wide


def test_perf_table_fits_80_columns():
    from rich.console import Console

    from bench.perf import print_perf_table

    row = {
        "method": "oagan:pretrain_finetune",
        "size": 128,
        "profile": "quick",
        "batch": 8,
        "device": "cpu",
        "train_step_s": 1.2345,
        "train_images_per_s": 6.48,
        "infer_images_per_s": 123.45,
        "harness_images_per_s": 98.7,
        "harness_overhead_ms_per_image": 2.05,
        "peak_rss_mb": 2345.6,
    }
    buf = io.StringIO()
    print_perf_table(Console(file=buf, width=80), "bench perf", [row, {"method": "telea", "size": 64, "error": "X"}])
    text = buf.getvalue()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    assert "oagan:pretrain_finetune" in text and "not shown" not in text  # every column fits a 23-letter name
    assert "2345.6" in text and "123.45" in text
    assert "telea at 64 px failed: X" in text


def test_warnings_are_one_line_each_once(capsys):
    from bench.cli import _one_line_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _one_line_warnings()
        for _ in range(3):
            warnings.warn("no VGG-16 weights file\nconfigured", UserWarning, stacklevel=1)
        warnings.warn("another", RuntimeWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == ["warning: no VGG-16 weights file configured", "warning: another"]


# -- charts --------------------------------------------------------------------------------------------------
def test_study_and_cmc_charts_are_self_contained_svg():
    from bench.report import charts

    study = charts.user_study(
        [
            {"method": "oagan", "votes": 30, "n": 50, "percent": 60.0, "ci95_low": 46.2, "ci95_high": 72.4},
            {"method": "pconv@oagan", "votes": 20, "n": 50, "percent": 40.0, "ci95_low": 27.6, "ci95_high": 53.8},
        ]
    )
    ranks = {f"rank{k}": 0.1 * k for k in range(1, 6)}
    cmc = charts.cmc({"results": {"occluded input": ranks, "oagan": {k: v + 0.3 for k, v in ranks.items()}}})
    for svg, name in ((study, "user-study"), (cmc, "cmc")):
        assert svg.startswith("<svg") and f'aria-label="{name}"' in svg and "<text" not in svg  # text as paths
        assert all(i.startswith(f"{name}-") for i in re.findall(r'id="([^"]+)"', svg))  # unique on a page
    assert charts.user_study([]) is None and charts.cmc(None) is None


# -- real runs -----------------------------------------------------------------------------------------------
def _bench(args, env, timeout=600):
    return subprocess.run(BENCH + args, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """The same configuration with seeds 0 and 1: 4 methods, 6 labels (two mask sources), one trained method.
    Seed 0 prints the terminal summary at 80 columns, seed 1 its --json summary."""
    root = tmp_path_factory.mktemp("report")
    env = tiny_plugin_env(root, COLUMNS="80")
    out = root / "results"
    first = _bench([*RUN, "--output", str(out)], env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _bench([*RUN, "--output", str(out), "--seed", "1", "--json"], env)
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted((out / "runs").iterdir(), key=lambda p: json.loads((p / "manifest.json").read_text())["seed"])
    return {"runs": runs, "first": first, "second": second, "root": root, "env": env}


def test_run_ends_with_one_line_per_method_and_the_report(two_seeds):
    *lines, last = two_seeds["first"].stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in two_seeds["first"].stdout
    assert last == f"report: {two_seeds['runs'][0] / 'report.html'}"
    for label in LABELS:
        assert sum(line.split()[0] == label for line in lines if line.strip()) == 1, label
    assert "Traceback" not in two_seeds["first"].stderr


def test_run_json_is_one_document_for_scripts(two_seeds):
    summary = json.loads(two_seeds["second"].stdout)
    run = two_seeds["runs"][1]
    assert summary["run"] == str(run) and summary["status"] == "complete"
    assert Path(summary["report"]).exists() and Path(summary["results"]).exists()
    assert set(summary["methods"]) == LABELS
    assert summary["reference"] == "identity"  # the label whose outputs are its inputs (tinymask's are too)
    assert summary["methods"]["telea@gt"]["psnr"] > summary["methods"]["identity"]["psnr"]
    assert two_seeds["second"].stderr.strip() == ""  # --json is quiet


def test_results_json_validates_against_its_schema(two_seeds):
    import jsonschema

    from bench.report.exports import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for run in two_seeds["runs"]:
        doc = json.loads((run / "results.json").read_text())
        jsonschema.validate(doc, schema)
        assert set(doc["methods"]) == LABELS
        pairs = doc["comparisons"]["test_paired"]["psnr"]
        assert len(pairs) == len(LABELS) * (len(LABELS) - 1) // 2
        ident = next(p for p in pairs if {p["a"], p["b"]} == {"identity", "tinymask"})  # both return the input
        assert (ident["mean_difference"], ident["p"], ident["significant"]) == (0.0, 1.0, False)
        assert doc["methods"]["identity"]["groups"]["test_paired"]["psnr"]
        assert doc["methods"]["tinyfill@gt"]["training"]["steps_trained"] == 6
        clean = doc["methods"]["identity"]["splits"]["test_clean"]["metrics"]["psnr"]
        assert clean["mean"] == "inf"  # JSON has no infinity


def _latex_rows(tex: str) -> list[str]:
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    return [line for line in body.splitlines() if line.strip()]


def test_tables_export_as_booktabs_latex_and_markdown(two_seeds, tmp_path):
    tables = two_seeds["runs"][0] / "tables"
    tex = (tables / "table3.tex").read_text()
    assert tex.isascii()
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    header = tex.split("\\toprule")[1].split("\\midrule")[0]
    columns = header.count("&") + 1
    assert columns == len(tex.split("\\begin{tabular}{")[1].split("}")[0])
    rows = _latex_rows(tex)
    assert len(rows) == len(LABELS) and all(r.count("&") + 1 == columns for r in rows)
    assert "telea@gt" in tex and "tinyfill@gt" in tex and "\\pm" in tex and "\\textbf{" in tex
    assert rows[-1].startswith("identity (input) & own &")  # the input is the last row, marked
    caption = tex.split("\\caption{")[1].split("}\n")[0]
    assert "mean $\\pm$ standard deviation over images" in caption and "(input): the occluded input itself" in caption
    md = (tables / "table3.md").read_text().splitlines()
    assert "mean ± standard deviation over images" in md[0]
    table = [line for line in md if line.startswith("|")]
    assert len(table) == 2 + len(LABELS) and len({line.count(" | ") for line in table}) <= 2
    assert table[-1].startswith("| identity (input) | own |")
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (Debian texlive-latex-base, texlive-latex-recommended)")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_report_of_two_seeds_shows_the_across_seed_spread(two_seeds, tmp_path):
    out = tmp_path / "both.html"
    done = _bench(["report", *map(str, two_seeds["runs"]), "-o", str(out), "--json"], two_seeds["env"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["report"] == str(out)
    html = out.read_text()
    assert "Runs side by side" in html and "seeds" in html
    means = [
        json.loads((r / "results.json").read_text())["methods"]["telea@gt"]["splits"]["test_paired"]["metrics"]
        for r in two_seeds["runs"]
    ]
    mean, std = stats.spread([m["psnr"]["mean"] for m in means])
    assert f"{mean:.2f} ± {std:.2f} (2)" in html


def test_report_shows_paired_statistics_grouping_and_charts(two_seeds):
    html = (two_seeds["runs"][0] / "report.html").read_text()
    assert "Paired differences: synthetic paired occlusions" in html
    assert "PSNR group" in html and 'class="group"' in html
    assert html.count("<svg") >= 4
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # self-contained: nothing to fetch
    for chart in ("significance", "by-family", "by-area", "mask-iou", "losses"):
        assert f'aria-label="{chart}"' in html, chart
    iou = html.split("Mask IoU by occluder family", 1)[1].split("</table>", 1)[0]
    assert "natural/sunglasses (n=" in iou and "sunglasses (n=" in iou.replace("natural/sunglasses", "")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_report_renders_charts_in_headless_chromium(two_seeds, tmp_path):
    html = two_seeds["runs"][0] / "report.html"
    dom, pixels = render_in_chromium(html, tmp_path, "1200,4000")
    assert dom.count("<svg") >= 4 and "Paired differences" in dom
    table3 = dom.split(">Table III: synthetic paired occlusions</h3>")[1].split("</table>")[0]
    rows = re.findall(r"<tr( class=\"input\")?><td class=\"l\">([^<]+)", table3)
    assert rows[-1] == (' class="input"', "identity ") and sum(bool(c) for c, _ in rows) == 1  # the input, last
    assert "standard deviation over the n images" in dom.split(">Table III")[1].split("<table")[0]
    assert (pixels.sum(axis=2) < 600).mean() > 0.03  # text, tables and images, not a blank page
    blue = np.abs(pixels - np.array([31, 119, 180])).sum(axis=2) < 30  # matplotlib's first colour: charts drawn
    assert blue.sum() > 200


def test_fig7_block_sets_mask_free_trained_methods_beside_the_input(two_seeds, tmp_path):
    """Generic over specs: a mask-free method with a training record joins Fig. 7 (here tinymask, marked so)."""
    run = tmp_path / "run"
    shutil.copytree(two_seeds["runs"][0], run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["training"]["tinymask"] = {"trained": "yes", "steps_trained": 1, "steps_requested": 1, "finished": True}
    (run / "manifest.json").write_text(json.dumps(manifest))
    done = _bench(["report", str(run), "--quiet"], two_seeds["env"])
    assert done.returncode == 0 and done.stdout == "", done.stderr[-2000:]
    html = (run / "report.html").read_text()
    block = html.split("Fig. 7: mask-free methods side by side")[1].split("<h3>")[0]
    assert "tinymask" in block and "identity (input, reference)" in block
    assert "clean pixels marked occluded" in block and "synthetic mask IoU" in block
    assert block.count('class="mask"') >= 2 * 8  # predicted masks under the outputs, natural and synthetic
    assert "clean pixels marked occluded (%)" in block


def test_shares_of_pixels_are_percentages(two_seeds):
    run = two_seeds["runs"][0]
    clean = (run / "report.html").read_text().split("<h3>Faces without occlusion")[1].split("</table>")[0]
    assert "<th>pixels marked occluded (%)</th>" in clean
    share = json.loads((run / "results.json").read_text())["methods"]["tinymask"]["splits"]["test_clean"]
    share = share["metrics"]["occluded_fraction"]
    assert 0 < share["mean"] < 1
    row = clean.split('<tr><td class="l">tinymask</td>')[1].split("</tr>")[0]
    assert f"<td>{100 * share['mean']:.2f} ± {100 * share['std']:.2f}</td>" in row


def _grid_row(html: str, split_title: str, note: str) -> list[bytes]:
    """The PNGs of one row of masks of an examples grid, found by the note heading the row."""
    import base64

    section = html.split(f"<h3>Examples: {split_title}")[1].split("</table>")[0]
    row = section.split(f'<span class="note">{note}</span></th>')[1].split("</tr>")[0]
    return [base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', row)]


def test_grids_show_the_mask_each_mask_fed_label_was_fed(two_seeds):
    """Under ``tinyfill@tinymask`` the mask it was fed: tinymask's saved prediction binarised at the run's
    threshold, as evaluation builds it; under ``@gt`` labels the true mask; one column per sample."""
    import cv2

    from bench.evaluation import binarise
    from bench.io import read_png

    run = two_seeds["runs"][0]
    html = (run / "report.html").read_text()
    samples = sorted(p.stem for p in (run / "inputs" / "test_paired" / "input").glob("*.png"))[:8]
    threshold = json.loads((run / "manifest.json").read_text())["config"]["mask_threshold"]
    fed = _grid_row(html, "synthetic paired occlusions", f"fed: tinymask&#39;s mask binarised at {threshold:g}")
    assert len(fed) == len(samples) == 8
    for png, sid in zip(fed, samples, strict=True):
        shown = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        predicted = read_png(run / "predictions" / "tinymask" / "test_paired" / "masks" / f"{sid}.png")
        assert np.array_equal(shown, binarise(predicted, threshold) * 255)
        assert 0 < shown.mean() < 255  # a real mask, neither empty nor full
    true = _grid_row(html, "synthetic paired occlusions", "fed: true mask")
    assert true == [(run / "inputs" / "test_paired" / "mask" / f"{sid}.png").read_bytes() for sid in samples]
    clean = _grid_row(html, "faces without occlusion", "fed: true mask")  # no occlusion: an empty mask, as fed
    assert len(clean) == 8 and all(cv2.imdecode(np.frombuffer(p, np.uint8), 0).max() == 0 for p in clean)
