"""Write the official P-DARTS supernet's outputs on fixed inputs, as a test fixture.

    python benchmarks/official_fixture.py OFFICIAL_CHECKOUT --out tests/fixtures/official_supernet.json
        [--bench-dir BENCH_DIR] [--official-commit SHA]

OFFICIAL_CHECKOUT is a checkout of github.com/chenxin061/pdarts (it may live in
benchmarks/official/, which git ignores). Its modules are imported unmodified through
`load_reference` of BENCH_DIR/refload.py (default: ../shared/bench beside the repository).
The commit id is read from the checkout when it is a git work tree; otherwise pass it.

For each mask case the official `model_search.Network` is built in float64 at a small size,
with skip dropout 0 so that nothing is random, every parameter is set by the canonical fill
below, and one training-mode forward and backward (mean cross entropy) is recorded: the
logits and the alpha gradients in full, and per tensor summaries of the weight gradients and
of the BatchNorm running statistics after the forward. tests/core/test_official_function.py
fills, feeds and summarises our supernet by the same rules (with the constants stored in
the fixture's config) and holds every kernel path of ours to the result.

Canonical parameter order: `named_parameters()` of either network, which is the two alpha
matrices (normal, reduce), then every weight in module registration order: stem conv and BN,
per cell preprocess0, preprocess1 and the 14 edges, each edge's ops in primitive order
(`none` has no parameters in either), each op's tensors in forward order (depthwise, then
pointwise, per conv block; FactorizedReduce conv_1, conv_2), then the classifier. The two
implementations nest their modules differently but register in this order; the fixture
keeps every shape, so that a difference in the order fails loudly rather than silently.

Canonical fill: parameter i from torch.Generator().manual_seed(fill_seed + i), float64
N(0, 1) of its shape, times alpha_scale for the alphas (far from uniform mixing weights, so
that every op's term counts), divided by sqrt(fan-in) for tensors of 2+ dims, times
bias_scale for 1-D tensors (stem BN affine, classifier bias). Inputs: N(0, 1) images then
labels from one generator seeded input_seed.

Canonical BatchNorm order: the BatchNorm2d modules in `modules()` order, each giving its
running mean then its running variance.

Summary of a list of tensors: for the k-th tensor t, [t.sum(), t.flatten() @ v_k] with v_k
uniform in [-1, 1] from torch.rand (float64) seeded probe_seed + k, times 2, minus 1. The
sum sees a shift of the whole tensor, the dot product a change in any single element, and
with |v| <= 1 both move by at most the tensor's summed absolute change.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
NUM_EDGES, NUM_OPS = 14, 8
CONFIG = {
    "channels": 4,
    "layers": 5,
    "classes": 10,
    "image_size": 8,
    "batch": 3,
    "input_seed": 7,
    "dtype": "float64",
    "fill_seed": 1000,
    "probe_seed": 5000,
    "alpha_scale": 0.5,
    "bias_scale": 0.5,
    "skip_dropout": 0.0,
}
RANDOM_OPS = 4  # ops on every edge in the random-mask case
STRIDE2_EDGES = (0, 1, 2, 3, 5)  # edges from a reduction cell's two inputs


# ---------------------------------------------------------------- the canonical rules


def canonical_parameters(net: nn.Module) -> list[nn.Parameter]:
    names = [name for name, _ in net.named_parameters()]
    if names[:2] != ["alphas_normal", "alphas_reduce"] or any(n.startswith("alphas") for n in names[2:]):
        raise SystemExit(f"official_fixture: expected the alphas first and only there, got {names[:3]}")
    return list(net.parameters())


@torch.no_grad()
def fill(net: nn.Module) -> None:
    c = CONFIG
    for i, p in enumerate(canonical_parameters(net)):
        values = torch.randn(
            p.shape, generator=torch.Generator().manual_seed(c["fill_seed"] + i), dtype=torch.float64
        )
        if i < 2:
            values *= c["alpha_scale"]
        elif p.dim() > 1:
            values /= math.sqrt(p[0].numel())
        else:
            values *= c["bias_scale"]
        p.copy_(values)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    c = CONFIG
    g = torch.Generator().manual_seed(c["input_seed"])
    x = torch.randn(c["batch"], 3, c["image_size"], c["image_size"], generator=g, dtype=torch.float64)
    return x, torch.randint(0, c["classes"], (c["batch"],), generator=g)


def bn_running_stats(net: nn.Module) -> list[torch.Tensor]:
    return [
        t for m in net.modules() if isinstance(m, nn.BatchNorm2d) for t in (m.running_mean, m.running_var)
    ]


def summaries(tensors: list[torch.Tensor]) -> list[list[float]]:
    out = []
    for k, t in enumerate(tensors):
        flat = t.detach().to(torch.float64).flatten()
        g = torch.Generator().manual_seed(CONFIG["probe_seed"] + k)
        probe = torch.rand(flat.numel(), generator=g, dtype=torch.float64) * 2 - 1
        out.append([flat.sum().item(), (flat @ probe).item()])
    return out


def switch_rows(switches: list[list[bool]]) -> list[str]:
    """A 14 x 8 mask as 14 strings of '0'/'1' in primitive order."""
    return ["".join("1" if on else "0" for on in row) for row in switches]


# ---------------------------------------------------------------- the cases


def random_switches(seed: int) -> list[list[bool]]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(NUM_EDGES):
        on = set(torch.randperm(NUM_OPS, generator=g)[:RANDOM_OPS].tolist())
        rows.append([k in on for k in range(NUM_OPS)])
    return rows


def useful(normal, reduce) -> bool:
    """`none` on some edges but not all, every other primitive somewhere in each cell type, and
    a strided skip-connect (a FactorizedReduce inside an edge) in the reduction cell."""
    for rows in (normal, reduce):
        with_none = sum(r[0] for r in rows)
        if not 0 < with_none < NUM_EDGES or not all(any(r[k] for r in rows) for k in range(1, NUM_OPS)):
            return False
    return any(reduce[e][3] for e in STRIDE2_EDGES) and normal != reduce


def random_case(first_seed: int = 11) -> tuple[list[list[bool]], list[list[bool]]]:
    seed = first_seed
    while True:
        normal, reduce = random_switches(seed), random_switches(seed + 1)
        if useful(normal, reduce):
            return normal, reduce
        seed += 2


def run_case(model_search, switches_normal, switches_reduce) -> dict:
    c = CONFIG
    torch.manual_seed(0)  # the constructor's own initialisation, overwritten by the fill
    net = model_search.Network(
        c["channels"],
        c["classes"],
        c["layers"],
        nn.CrossEntropyLoss(),
        switches_normal=[list(r) for r in switches_normal],
        switches_reduce=[list(r) for r in switches_reduce],
        p=c["skip_dropout"],
    )
    net = net.double().train()
    fill(net)
    params = canonical_parameters(net)
    x, y = inputs()
    logits = net(x)
    running = summaries(bn_running_stats(net))
    loss = F.cross_entropy(logits, y)
    loss.backward()
    missing = [i for i, p in enumerate(params) if p.grad is None]
    if missing:
        raise SystemExit(f"official_fixture: parameters without a gradient: {missing[:5]}")
    return {
        "switches_normal": switch_rows(switches_normal),
        "switches_reduce": switch_rows(switches_reduce),
        "parameter_shapes": [list(p.shape) for p in params],
        "loss": loss.item(),
        "logits": logits.detach().tolist(),
        "alpha_grads": {"normal": params[0].grad.tolist(), "reduce": params[1].grad.tolist()},
        "weight_grads": summaries([p.grad for p in params[2:]]),
        "bn_running": running,
        "bn_batches_tracked": sorted(
            {int(m.num_batches_tracked) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
        ),
    }


def official_commit(checkout: Path, given: str | None) -> str:
    if given:
        return given

    def git(*args):
        try:
            return subprocess.run(
                ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=False
            )
        except OSError:
            return None

    head, top = git("rev-parse", "HEAD"), git("rev-parse", "--show-toplevel")
    # a checkout extracted inside some other repository must not take that repository's commit
    if (
        head
        and top
        and head.returncode == 0
        and top.returncode == 0
        and Path(top.stdout.strip()).resolve() == checkout.resolve()
    ):
        return head.stdout.strip()
    raise SystemExit(f"official_fixture: {checkout} is not a git work tree: pass --official-commit SHA")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("official", type=Path, help="checkout of github.com/chenxin061/pdarts")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--bench-dir",
        type=Path,
        default=ROOT.parent / "shared" / "bench",
        help="folder holding refload.py (default: ../shared/bench beside the repository)",
    )
    ap.add_argument("--official-commit", help="the checkout's commit id, when it is not a git work tree")
    a = ap.parse_args(argv)
    if not (a.bench_dir / "refload.py").is_file():
        raise SystemExit(f"official_fixture: no refload.py in {a.bench_dir} (pass --bench-dir)")
    if not (a.official / "model_search.py").is_file():
        raise SystemExit(f"official_fixture: {a.official} holds no model_search.py (not a P-DARTS checkout)")
    commit = official_commit(a.official, a.official_commit)
    sys.path.insert(0, str(a.bench_dir.resolve()))
    from refload import load_reference

    mods = load_reference(str(a.official))
    primitives = list(mods["genotypes"].PRIMITIVES)
    if len(primitives) != NUM_OPS or primitives[0] != "none" or primitives[3] != "skip_connect":
        raise SystemExit("official_fixture: unexpected PRIMITIVES in the checkout")
    full = [[True] * NUM_OPS for _ in range(NUM_EDGES)]
    cases = {
        "all-ops": run_case(mods["model_search"], full, full),
        "random-4": run_case(mods["model_search"], *random_case()),
    }
    fixture = {
        "about": "official P-DARTS supernet (model_search.Network), one training-mode forward and backward "
        "in float64; order, fill and summaries as benchmarks/official_fixture.py defines them",
        "official": {"repository": "github.com/chenxin061/pdarts", "commit": commit},
        "torch": torch.__version__,
        "config": CONFIG,
        # not "cases": tests/core/test_conformance.py reads every fixture with that key as its own
        "masks": cases,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes): masks {', '.join(cases)}; official commit {commit}")


if __name__ == "__main__":
    main()
