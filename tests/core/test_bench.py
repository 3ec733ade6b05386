"""`pdarts-ray bench`: step options, all stages, and the memory model's exact part."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers.cli import run_cli

from pdarts_ray.core.bench import bench_config, projected_search_hours, stage_switches, step_flops
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.errors import UserError
from pdarts_ray.core.memory_model import heaviest_switches, kept_bytes, predict_stage
from pdarts_ray.core.supernet import SearchNetwork

STEP_KEYS = {
    "stage",
    "batch",
    "device",
    "median_step_s",
    "peak_memory_bytes",
    "flops",
    "achieved_flop_per_s",
    "openmp_env",
}


@pytest.mark.slow
def test_bench_all_runs_each_stage_in_its_own_process():
    flags = "--batch 1 --image-size 8 --steps 1 --warmup 0 --device cpu --json"
    code, stdout, stderr = run_cli("bench", "all", *flags.split())
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert [r["stage"] for r in rows] == [1, 2, 3] and all(set(r) == STEP_KEYS for r in rows)


@pytest.mark.slow
def test_bench_step_options(tmp_path):
    code, stdout, stderr = run_cli(
        "bench",
        "step",
        "--stage",
        "2",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--kernels",
        "reference",
        "--dtype",
        "bfloat16",
        "--no-channels-last",
        "--image-size",
        "16",
        "--threads",
        "1",
        "--weight-steps",
        "1",
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == STEP_KEYS | {"weight_only_step_s"} and result["weight_only_step_s"] > 0


def test_bench_masks_from_a_run_folder(tmp_path):
    alphas = {
        f"stage{s}": {c: {"switches": heaviest_switches(k), "alphas": []} for c in ("normal", "reduce")}
        for s, k in ((1, 8), (2, 4), (3, 2))
    }
    (tmp_path / "alphas.json").write_text(json.dumps(alphas))
    assert stage_switches(3, str(tmp_path))["normal"] == heaviest_switches(2)
    with pytest.raises(UserError, match="no stage-1 switches"):
        stage_switches(1, str(tmp_path / "missing"))
    code, _, stderr = run_cli("bench", "step", "--stage", "1", "--masks", tmp_path / "nowhere")
    assert code == 2 and "--masks" in stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--batch", "0"], "--batch"),
        (["--device", "tpu"], "device"),
        (["--weight-steps", "9"], "--weight-steps"),
    ],
)
def test_bench_bad_flags(args, fragment):
    code, _, stderr = run_cli("bench", "step", "--stage", "1", *args)
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1


def _saved(net, x, step):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(
            net(x, arch_grad=step == "arch", weight_grad=step == "weight"), torch.zeros(len(x)).long()
        )
    return sum(storages.values())


@pytest.mark.parametrize("kernels", ["lean", "reference", "batched"])
def test_kept_bytes_extrapolate_exactly_in_the_batch(kernels):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke", None, [f"kernels={kernels}"])
    switches = {"normal": heaviest_switches(5), "reduce": heaviest_switches(5)}
    predicted = kept_bytes(cfg, 4, switches, 0.4, batch=5, image_size=8)
    net = SearchNetwork(
        cfg.channels, 10, 4, switches["normal"], switches["reduce"], 0.4, kernels=kernels
    ).train()
    measured = max(_saved(net, torch.randn(5, 3, 8, 8), step) for step in ("arch", "weight"))
    assert predicted == measured


def test_prediction_parts_and_heaviest_masks():
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke")
    small = predict_stage(cfg, 1, "cpu", batch=4)
    big = predict_stage(cfg, 1, "cpu", batch=8)
    assert big["bytes"] > small["bytes"] and set(small["parts"]) == {
        "fixed",
        "state",
        "dataset",
        "kept",
        "working",
    }
    assert predict_stage(cfg, 1, "cuda", batch=4)["parts"]["fixed"] == 0
    assert [sum(r) for r in heaviest_switches(3)] == [3] * 14
    assert heaviest_switches(2)[0][5] and heaviest_switches(2)[0][4]  # the two sep convs


def test_bench_predict_cli():
    code, stdout, stderr = run_cli("bench", "predict", "--preset", "smoke", "--device", "cpu", "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert [r["stage"] for r in rows] == [1, 2, 3] and all(r["bytes"] > 2**20 for r in rows)


def test_projected_hours():
    # 261 steps per epoch at batch 96: 10 weight-only epochs + 15 full ones per stage
    assert projected_search_hours([1.0] * 3, [0.5] * 3) == pytest.approx(
        3 * 261 * (10 * 0.5 + 15 * 1.0) / 3600
    )


def conv_and_linear_macs(model, x, modules=None) -> int:
    """Multiply-adds of every nn.Conv2d and nn.Linear in one forward pass, from their shapes."""
    total = 0
    modules = list(modules if modules is not None else model.modules())

    def conv(module, inputs, output):
        nonlocal total
        total += (
            output.numel()
            * (module.in_channels // module.groups)
            * module.kernel_size[0]
            * module.kernel_size[1]
        )

    def linear(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
        for m in modules
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        model(x, arch_grad=False, weight_grad=False)
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_step_flops_are_the_supernets_arithmetic(stage):
    """The forward count equals twice the multiply-adds the supernet's convolutions (depthwise
    ones included) and classifier do for the same batch; it scales with the batch; the steps
    are the model counts 2F (architecture) and 3F (weights)."""
    from pdarts_ray.core.bench import HARNESS_CELLS, HARNESS_DROPOUT
    from pdarts_ray.core.search import Stage, StagePlan

    cfg = bench_config(batch=4, device="cpu", kernels="reference", channels_last="off", image_size=16)
    switches = stage_switches(stage)
    plan = StagePlan(
        index=stage - 1,
        cells=HARNESS_CELLS[stage],
        ops=sum(switches["normal"][0]),
        skip_dropout_rate=HARNESS_DROPOUT[stage],
        last=stage == 3,
    )
    net = Stage(cfg, plan, switches, num_classes=10, device=torch.device("cpu"))
    net.model.train()
    macs = conv_and_linear_macs(net.model, torch.randn(4, 3, 16, 16))
    flops = step_flops(stage, cfg)
    assert flops["forward"] == 2 * macs
    assert step_flops(stage, bench_config(batch=96, image_size=16))["forward"] == 24 * flops["forward"]
    assert (flops["arch_step"], flops["weight_step"], flops["full_step"]) == (
        2 * flops["forward"],
        3 * flops["forward"],
        5 * flops["forward"],
    )


def test_retrain_step_bench_and_its_flops():
    """The retraining step's forward count equals twice the network's convolution and linear
    multiply-adds in training mode (auxiliary head included); the CLI reports a timed step."""
    from pdarts_ray.evaluation.bench import retrain_step_flops
    from pdarts_ray.evaluation.genotypes import PDARTS
    from pdarts_ray.evaluation.network import build_network

    model = build_network(PDARTS, "cifar", 8, 10, 5, auxiliary=True)
    model.train()
    macs = conv_and_linear_macs(lambda x, **_: model(x), torch.randn(2, 3, 32, 32), modules=model.modules())
    flops = retrain_step_flops(PDARTS, channels=8, layers=5, batch=2)
    assert flops["forward"] == 2 * macs and flops["train_step"] == 3 * flops["forward"]
    assert retrain_step_flops(PDARTS, channels=8, layers=5, batch=128)["forward"] == 64 * flops["forward"]
    code, out, err = run_cli(
        "bench",
        "retrain-step",
        "--channels",
        "8",
        "--layers",
        "5",
        "--batch",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["genotype"] == "PDARTS" and result["median_step_s"] > 0
    assert (
        result["flops"]["train_step"]
        == 2 * retrain_step_flops(PDARTS, channels=8, layers=5, batch=2)["train_step"]
    )
    code, _, err = run_cli("bench", "retrain-step", "--layers", "2")
    assert code == 2 and "--layers" in err


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_a_batched_cell_dispatches_under_0_3x_the_module_paths_calls(stage):
    """The count `bench ops` reports, per normal cell (a 4-cell network less a 3-cell one, so
    that the stem, classifier and loss do not weigh in), against the module path with the
    same foreach optimisers. The whole harness step's ratio to the official code is the
    benchmark's (docs/performance.md)."""
    from pdarts_ray.core.opcount import count_step_ops

    def per_cell(kernels):
        return (
            count_step_ops(stage, kernels, cells=4)["calls"]
            - count_step_ops(stage, kernels, cells=3)["calls"]
        )

    assert per_cell("batched") <= 0.3 * per_cell("reference")
    three = {k: count_step_ops(stage, k, cells=3) for k in ("reference", "lean", "batched")}
    assert three["batched"]["convolutions"] <= 0.35 * three["reference"]["convolutions"]
    assert three["lean"]["calls"] > three["reference"]["calls"]  # lean recomputes: more calls, less memory


@pytest.mark.slow
def test_bench_ops_cli_and_its_bad_flags():
    code, stdout, _ = run_cli("bench", "ops", "--stage", "1", "--kernels", "batched", "--json")
    (row,) = json.loads(stdout)
    assert code == 0 and row["kernels"] == "batched" and row["stage"] == 1 and row["calls"] > 0
    code, _, stderr = run_cli("bench", "ops", "--kernels", "lean,fast")
    assert code == 2 and "'fast'" in stderr and stderr.count("\n") == 1
