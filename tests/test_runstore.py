import numpy as np
import pytest

from bench.io import read_png, write_png
from bench.runstore import RunStore, summarize
from bench.training import save_checkpoint


def test_png_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "a" / "x.png", img)
    assert np.array_equal(read_png(tmp_path / "a" / "x.png"), img)
    assert not list((tmp_path / "a").glob(".*tmp"))  # no temp file left behind


def test_truncated_metrics_line_is_dropped_and_appends_stay_parseable(tmp_path):
    store = RunStore(tmp_path)
    store.append_rows("m", [{"split": "s", "sample": "a", "psnr": 1.0}])
    with open(store.metrics_path("m"), "a") as f:
        f.write('{"split": "s", "sample": "b", "ps')  # a kill mid-write
    assert store.done_ids("m", "s") == {"a"}
    store.append_rows("m", [{"split": "s", "sample": "c", "psnr": float("inf")}])
    assert store.done_ids("m", "s") == {"a", "c"}


def test_summary_mean_std_ci(tmp_path):
    store = RunStore(tmp_path)
    rows = [
        {"label": "m", "method": "m", "mask_source": "own", "split": "s", "sample": str(i), "psnr": v}
        for i, v in enumerate([10.0, 12.0, 14.0])
    ]
    store.append_rows("m", rows)
    s = summarize(store.frame()).iloc[0]
    assert s["n"] == 3 and s["psnr_mean"] == 12.0 and s["psnr_std"] == 2.0
    assert s["psnr_ci95"] == 1.96 * 2.0 / 3**0.5


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    import torch

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"w": torch.ones(2)})

    def boom(*a, **k):
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr("os.replace", boom)
    try:
        save_checkpoint(path, {"w": torch.zeros(2)})
    except KeyboardInterrupt:
        pass
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0]  # last good one kept
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_damaged_row_fails_loudly_and_a_run_repairs_it(tmp_path):
    store = RunStore(tmp_path)
    store.append_rows("m", [{"split": "s", "sample": c, "psnr": 1.0} for c in "abc"])
    path = store.metrics_path("m")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"split": "s", "samp\n' + lines[2] + lines[0])
    with pytest.raises(ValueError, match=r"m.jsonl:2 is a damaged metrics row; run the same `bench run` again"):
        store.read_rows("m")
    assert store.repair_rows("m") == 2  # the damaged line and the repeated row
    assert [r["sample"] for r in store.read_rows("m")] == ["a", "c"]  # b is recomputed by the run


@pytest.mark.parametrize("value", ["NaN", '"20"', "1e308", "true", "[1]"])
def test_a_metric_the_harness_cannot_have_written_is_damage(tmp_path, value):
    store = RunStore(tmp_path)
    store.append_rows("m", [{"split": "s", "sample": "a", "psnr": 1.0}])
    with open(store.metrics_path("m"), "a") as f:
        f.write('{"split": "s", "sample": "b", "psnr": ' + value + "}\n")
    with pytest.raises(ValueError, match=r"m.jsonl:2 is a damaged metrics row"):
        store.read_rows("m")


def test_a_label_fed_another_model_drops_its_rows_and_predictions(tmp_path):
    store = RunStore(tmp_path)
    store.write_manifest({"methods": {}})
    assert not store.claim_label("telea@oagan", "not trainable | masks of oagan: m1")
    store.append_rows("telea@oagan", [{"split": "s", "sample": "a", "psnr": 1.0}])
    write_png(store.prediction_path("telea@oagan", "s", "a"), np.zeros((4, 4, 3), np.uint8))
    assert not store.claim_label("telea@oagan", "not trainable | masks of oagan: m1")  # the same: kept
    assert store.read_rows("telea@oagan")
    assert store.claim_label("telea@oagan", "not trainable | masks of oagan: m2")  # the mask source changed
    assert store.read_rows("telea@oagan") == [] and not store.prediction_path("telea@oagan", "s", "a").exists()
