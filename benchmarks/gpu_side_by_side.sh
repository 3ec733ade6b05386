#!/usr/bin/env bash
# GPU figures in one short run (a few minutes): for each search stage, one full step of the
# official P-DARTS code and of pdarts-ray side by side (time, CUDA peak memory), weight-only
# steps and the projected whole-search time at the paper's batch of 96, bf16 autocast, and
# the memory model's predictions for the same stages. Writes its files to OUT_DIR.
#
#   benchmarks/gpu_side_by_side.sh PATH_TO_OFFICIAL_CHECKOUT [OUT_DIR]
set -u
official=$1
out=${2:-gpu-bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
log="$out/log.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__)"; } | tee "$log"
python3 benchmarks/official_side_by_side.py "$official" --device cuda --batch 96 --rounds 1 --steps 10 \
    --warmup 3 --weight-steps 10 --json-out "$out/side_by_side_b96.json" 2>>"$log" | tee "$out/side_by_side_b96.md"
python3 -m pdarts_ray.cli bench all --device cuda --batch 96 --steps 10 --warmup 3 --dtype bfloat16 --json \
    > "$out/bf16_b96.json" 2>>"$log"
python3 -m pdarts_ray.cli bench predict --harness --device cuda --batch 96 --json > "$out/predict_b96.json" 2>>"$log"
cat "$out/bf16_b96.json" "$out/predict_b96.json"
