"""Op-space schedules: how many candidate ops each stage keeps per edge.

The sweeps of the `opspace` experiment: the paper's context and what they compare are in
pdarts_ray/experiments/opspace.py. The flags are those of `pdarts-ray sweep` (--preset,
default paper; --storage, --name, --concurrent, --address, ...). Ray is joined as
`pdarts-ray sweep` finds it: under `ray submit` the running cluster, elsewhere a local Ray.

Run:
    python ablations/opspace_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/opspace_grid.py -- --preset paper-c10
"""

import sys

from pdarts_ray.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "--experiment", "opspace", *sys.argv[1:]]))
