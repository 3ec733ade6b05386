"""Search space approximation versus random op spaces of the same size.

The sweeps of the `approx` experiment: the paper's context and what they compare are in
pdarts_ray/experiments/approx.py. The flags are those of `pdarts-ray sweep` (--preset,
default paper; --storage, --name, --concurrent, --address, ...). Ray is joined as
`pdarts-ray sweep` finds it: under `ray submit` the running cluster, elsewhere a local Ray.

Run:
    python ablations/approx_vs_random.py --preset tiny
    ray submit cluster/gpu.yaml ablations/approx_vs_random.py -- --preset paper-c10
"""

import sys

from pdarts_ray.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "--experiment", "approx", *sys.argv[1:]]))
