#!/usr/bin/env bash
# The GPU figures of one device session (about 11 minutes of phases, sized for 15 minutes
# of device time with start-up): benchmarks/gpu_phases.py's phases (steps side by side with
# the official code, profile, retraining step, real epochs, concurrent trials), each writing
# its JSON into OUT_DIR as soon as it ends.
#
#   benchmarks/gpu_side_by_side.sh PATH_TO_OFFICIAL_CHECKOUT [OUT_DIR] [--phases steps,profile,...]
#   benchmarks/gpu_side_by_side.sh none OUT_DIR --dry-run     # CPU, toy sizes, no official code
#
# On a machine that cannot reach GitHub, carry a checkout of github.com/chenxin061/pdarts
# along in the repository (an ignored folder such as benchmarks/official/) and pass its path.
set -u
official=$1
out=${2:-gpu-bench}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "${PYTHON:-python3}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$out/machine.txt"
if [ "$official" = none ]; then
    "${PYTHON:-python3}" benchmarks/gpu_phases.py "$out" "$@"
else
    "${PYTHON:-python3}" benchmarks/gpu_phases.py "$out" --official "$official" "$@"
fi
