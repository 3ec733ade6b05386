"""`pdarts-ray bench`: step options, all stages, and the memory model's exact part."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from pdarts_ray.core.bench import projected_search_hours, stage_switches
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.errors import UserError
from pdarts_ray.core.memory_model import heaviest_switches, kept_bytes, predict_stage
from pdarts_ray.core.supernet import SearchNetwork

STEP_KEYS = {"stage", "batch", "device", "median_step_s", "peak_memory_bytes"}


def test_bench_all_runs_each_stage_in_its_own_process():
    code, stdout, stderr = run_cli("bench", "all", "--batch", "1", "--steps", "1", "--warmup", "0",
                                   "--device", "cpu", "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert [r["stage"] for r in rows] == [1, 2, 3] and all(set(r) == STEP_KEYS for r in rows)


def test_bench_step_options(tmp_path):
    code, stdout, stderr = run_cli("bench", "step", "--stage", "2", "--batch", "2", "--steps", "1", "--warmup", "0",
                                   "--kernels", "reference", "--dtype", "bfloat16", "--no-channels-last",
                                   "--image-size", "16", "--threads", "1", "--weight-steps", "1", "--device", "cpu",
                                   "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == STEP_KEYS | {"weight_only_step_s"} and result["weight_only_step_s"] > 0


def test_bench_masks_from_a_run_folder(tmp_path):
    alphas = {f"stage{s}": {c: {"switches": heaviest_switches(k), "alphas": []} for c in ("normal", "reduce")}
              for s, k in ((1, 8), (2, 4), (3, 2))}
    (tmp_path / "alphas.json").write_text(json.dumps(alphas))
    assert stage_switches(3, str(tmp_path))["normal"] == heaviest_switches(2)
    with pytest.raises(UserError, match="no stage-1 switches"):
        stage_switches(1, str(tmp_path / "missing"))
    code, _, stderr = run_cli("bench", "step", "--stage", "1", "--masks", tmp_path / "nowhere")
    assert code == 2 and "--masks" in stderr


@pytest.mark.parametrize("args, fragment", [(["--batch", "0"], "--batch"), (["--device", "tpu"], "device"),
                                            (["--weight-steps", "9"], "--weight-steps")])
def test_bench_bad_flags(args, fragment):
    code, _, stderr = run_cli("bench", "step", "--stage", "1", *args)
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1


def _saved(net, x, step):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(net(x, arch_grad=step == "arch", weight_grad=step == "weight"), torch.zeros(len(x)).long())
    return sum(storages.values())


@pytest.mark.parametrize("kernels", ["lean", "reference"])
def test_kept_bytes_extrapolate_exactly_in_the_batch(kernels):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke", None, [f"kernels={kernels}"])
    switches = {"normal": heaviest_switches(5), "reduce": heaviest_switches(5)}
    predicted = kept_bytes(cfg, 4, switches, 0.4, batch=5, image_size=8)
    net = SearchNetwork(cfg.channels, 10, 4, switches["normal"], switches["reduce"], 0.4, kernels=kernels).train()
    measured = max(_saved(net, torch.randn(5, 3, 8, 8), step) for step in ("arch", "weight"))
    assert predicted == measured


def test_prediction_parts_and_heaviest_masks():
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke")
    small = predict_stage(cfg, 1, "cpu", batch=4)
    big = predict_stage(cfg, 1, "cpu", batch=8)
    assert big["bytes"] > small["bytes"] and set(small["parts"]) == {"fixed", "state", "dataset", "kept", "working"}
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
    assert projected_search_hours([1.0] * 3, [0.5] * 3) == pytest.approx(3 * 261 * (10 * 0.5 + 15 * 1.0) / 3600)
