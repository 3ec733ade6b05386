"""Cells per stage: the depth schedule of the progressive search.

The sweeps of the `depth` experiment: the paper's context and what they compare are in
pdarts_ray/experiments/depth.py. The flags are those of `pdarts-ray sweep` (--preset,
default paper; --storage, --name, --concurrent, --address, ...). Ray is joined as
`pdarts-ray sweep` finds it: under `ray submit` the running cluster, elsewhere a local Ray.

Run:
    python ablations/depth_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/depth_grid.py -- --preset paper-c10
"""

import sys

from pdarts_ray.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "--experiment", "depth", *sys.argv[1:]]))
