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

    rows = {r["method"]: r for r in json.loads(out.read_text())}
    for name in ("identity", "telea"):
        row = rows[name]
        assert "error" not in row, row
        assert row["infer_images_per_s"] > row["harness_images_per_s"] > 0
        assert row["harness_overhead_ms_per_image"] > 0
