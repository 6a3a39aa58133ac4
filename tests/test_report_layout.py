"""What the report page holds and leaves out: no empty section, the input as a marked row, captions that say
whether an input is drawn, loss terms as small multiples, ranking rows that carry
their own group letters."""

import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape

import pytest

from tests.util import render_in_chromium

BENCH = [sys.executable, "-m", "bench.cli"]


@pytest.fixture(scope="module")
def classical(tmp_path_factory):
    """A run without any trained or mask-predicting method: no Fig. 7, no masks, no training to show."""
    out = tmp_path_factory.mktemp("layout") / "results"
    args = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "8", "--data-limit", "40"]
    done = subprocess.run(
        [*BENCH, *args, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (out / "runs").iterdir()
    return run


def _sections(html: str) -> dict[str, str]:
    """Each ``<h3>`` heading of the page and what follows it up to the next heading."""
    parts = re.split(r"<h3[^>]*>(.*?)</h3>", html)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_empty_sections_are_left_out_and_the_input_is_a_row(classical, tmp_path):
    dom, pixels = render_in_chromium(classical / "report.html", tmp_path, "1280,3000")
    sections = _sections(dom.split("<section", 2)[-1])  # the run's section
    titles = " | ".join(sections)
    for absent in ("Occlusion masks", "Fig. 7", "Training", "Table IV", "Face identification", "User study"):
        assert absent not in titles, absent
    assert 'aria-label="mask-iou"' not in dom and 'aria-label="losses"' not in dom
    for title, body in sections.items():  # every heading shown heads a table, a chart or a grid
        assert "<table" in body or "<svg" in body, title
    table3 = sections["Table III: synthetic paired occlusions"]
    assert re.search(r'<tr class="input"><td class="l">identity <span class="note">\(input\)</span>', table3)
    assert "standard deviation over the n images" in table3
    clean = sections["Faces without occlusion (Fig. 9: a method should leave them alone)"]
    assert "pixels marked occluded" not in clean  # no method predicts a mask: an empty column is left out
    assert "The black bar is the input (identity" in dom and "No input is drawn" not in dom
    assert (pixels.sum(axis=2) < 600).mean() > 0.01  # drawn, not blank


def test_without_a_reference_captions_say_no_input_is_drawn(classical, tmp_path):
    """The same run with its input label removed (as a run scored before the input was always scored)."""
    run = tmp_path / "run"
    shutil.copytree(classical, run)
    manifest = json.loads((run / "manifest.json").read_text())
    for section in ("methods", "training"):
        manifest[section].pop("identity")
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "metrics" / "identity.jsonl").unlink()
    shutil.rmtree(run / "predictions" / "identity")
    done = subprocess.run([*BENCH, "report", str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = unescape((run / "report.html").read_text())
    assert json.loads((run / "results.json").read_text())["reference"] is None
    assert 'class="input"' not in html and "black bar" not in html and "dashed black line" not in html
    assert "No input row: none of this run's labels returns its input." in html
    assert html.count("No input is drawn: none of this run's labels returns its input.") == 2  # family, area
    assert "(input)" not in html


def test_loss_terms_are_small_multiples_sharing_the_step_axis():
    from bench.report import charts

    rows = [{"step": s, **{f"term{k}": 10.0**k / s for k in range(13)}} for s in range(1, 81)]
    few = [{"step": s, "loss": 1.0 / s, "hole": 2.0} for s in range(1, 81)]
    svg = charts.training_losses({"oagan": rows, "pconv": few})
    axes = set(re.findall(r'id="losses-(axes_\d+)"', svg))
    assert len(axes) == 13 + 2  # one panel per term, none for the empty slots of a row


def test_ranking_rows_carry_their_letters_and_bars_join_only_shared_groups():
    from bench.report import charts

    def panel(letters):
        return {"title": "PSNR", "unit": "PSNR", "ranks": {"a": 1.2, "b": 1.8}, "letters": letters, "n": 9}

    bar = "#1f77b4"  # tab:blue, the colour of a group's bar
    assert bar not in charts.significance([panel({"a": "a", "b": "b"})])  # two groups of one: no bar rows
    assert bar in charts.significance([panel({"a": "a", "b": "a"})])
