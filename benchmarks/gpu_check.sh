#!/usr/bin/env bash
# The device check for a session that is lent a GPU (run it once through the device tool, then give it back):
# CUDA tests, `bench perf` at 64 and 128 px (eager float32, then bf16 + channels-last + compiled inference against
# it), a short paper-profile run of the main job, and a DDP smoke run on two GPUs. Everything lands in $OUT.
set -uo pipefail
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if [ ! -x .venv/bin/bench ]; then
  python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' > "$OUT/install.txt" 2>&1
fi
timeout 150 .venv/bin/python -m pytest -q -m gpu tests/test_gpu.py > "$OUT/gpu-tests.txt" 2>&1
timeout 150 .venv/bin/bench perf -m identity,telea,oagan,pconv,csa,gfc,gnipt,yeh,cyclegan,ganimation,selfreg --sizes 64,128 --batch-size 16 --profile paper \
  --device cuda --output "$OUT/perf.json" > "$OUT/perf.txt" 2>&1
timeout 180 .venv/bin/bench perf -m oagan,pconv,csa,gfc,gnipt,cyclegan,ganimation,selfreg --sizes 128 --batch-size 16 \
  --profile paper --device cuda --precision bf16 --channels-last --compile --output "$OUT/perf-fast.json" \
  > "$OUT/perf-fast.txt" 2>&1
timeout 150 .venv/bin/bench run --methods oagan,pconv --profile paper --steps 300 --limit 64 --device cuda \
  --output "$OUT/results" > "$OUT/run.txt" 2>&1
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then  # data-parallel smoke run on two GPUs (NCCL)
  timeout 150 .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node=2 -m bench.cli run \
    --methods gfc,oagan --mask-source gt --profile paper --steps 100 --limit 32 --device cuda \
    --output "$OUT/ddp" > "$OUT/ddp.txt" 2>&1
fi
tail -n 30 "$OUT"/*.txt
