import pytest
from typer.testing import CliRunner

from bench.cli import app


def test_bench_perf_measures_identity_and_telea(tmp_path):
    out = tmp_path / "perf.json"
    result = CliRunner().invoke(
        app,
        [
            "perf",
            "-m",
            "identity,telea",
            "--sizes",
            "32",
            "--batch-size",
            "4",
            "--repeats",
            "2",
            "--device",
            "cpu",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("identity", "telea"):
        row = rows[name]
        assert "error" not in row, row
        assert row["infer_images_per_s"] > row["harness_images_per_s"] > 0
        assert row["harness_overhead_ms_per_image"] > 0


def test_bench_perf_times_an_acceleration_against_eager_float32_on_the_same_weights(tmp_path):
    import json

    out = tmp_path / "perf.json"
    argv = ["perf", "-m", "gfc", "--sizes", "32", "--batch-size", "4", "--repeats", "2", "--device", "cpu"]
    result = CliRunner().invoke(app, [*argv, "--channels-last", "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["conv_peak_gflops"]["32"] > 0
    (row,) = report["rows"]
    assert "error" not in row, row
    assert row["acceleration"] == {"precision": "fp32", "channels_last": True, "compile": False}
    assert row["eager_images_per_s"] > 0 and row["speedup_over_eager"] > 0
    assert row["train_speedup_over_eager"] > 0  # channels-last changes training: its step is timed against eager
    assert row["accelerated_max_uint8_diff"] <= 1  # float rounding can move a pixel by one level, no more
    assert 0 < row["peak_fraction"] and row["gflop_per_image"] > 0
    assert row["harness_overhead_pct"] == pytest.approx(
        100 * (1 / row["harness_images_per_s"] - 1 / row["infer_images_per_s"]) * row["infer_images_per_s"], abs=0.5
    )


def test_bench_perf_refuses_an_unknown_precision():
    result = CliRunner().invoke(app, ["perf", "-m", "identity", "--sizes", "32", "--precision", "fp8"])
    assert result.exit_code == 2
    assert "--precision must be one of fp32, bf16, got 'fp8'" in result.output
