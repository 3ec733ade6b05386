"""The search's optimisers and gradient clipping run as foreach calls: on CPU they give the
per-tensor implementations' bits, checkpoints written before (param groups saying
foreach=None) resume on them bit for bit, and a step dispatches a few calls for all
tensors instead of a few per tensor."""

import io

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pdarts_ray.core.bench import bench_config, harness_stage
from pdarts_ray.core.config import replace

CPU = torch.device("cpu")
SIZE, BATCH = 8, 4
FEW = 20  # ATen calls of one foreach optimiser step or clipping, whatever the number of tensors
AS_CALLED = "as called"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Both sides of every comparison run in this process with the same thread count; one
    thread keeps these small steps fast on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(kernels="lean"):
    # a clip bound below both gradient norms, so that clipping scales every step
    return replace(bench_config(batch=BATCH, device="cpu", kernels=kernels, image_size=SIZE), grad_clip=0.3)


def stage(cells=3, kernels="lean", st=1):
    return harness_stage(st, config(kernels), CPU, cells=cells)


def per_tensor_optimisers(net, foreach=False):
    """The optimisers Stage builds, with another foreach setting (None: as built before foreach)."""
    cfg = net.cfg
    net.opt_w = torch.optim.SGD(
        net.weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=foreach
    )
    net.opt_a = torch.optim.Adam(
        net.alphas,
        lr=cfg.arch_lr,
        betas=(cfg.arch_beta1, cfg.arch_beta2),
        weight_decay=cfg.arch_weight_decay,
        foreach=foreach,
    )


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def counted(fn, log: list):
    """fn, appending the ATen calls of each of its calls to `log`."""

    def wrapped(*args, **kwargs):
        counter = Count()
        with counter:
            out = fn(*args, **kwargs)
        log.append(counter.calls)
        return out

    return wrapped


@pytest.fixture
def clip_as(monkeypatch):
    """clip_grad_norm_ as Stage calls it, or on another implementation (foreach False or None),
    optionally logging each call's ATen calls."""
    clip = torch.nn.utils.clip_grad_norm_

    def use(foreach=AS_CALLED, log=None):
        def forced(*args, **kwargs):
            return clip(*args, **(kwargs if foreach == AS_CALLED else {**kwargs, "foreach": foreach}))

        monkeypatch.setattr(
            torch.nn.utils, "clip_grad_norm_", forced if log is None else counted(forced, log)
        )

    return use


def data(steps, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return torch.randn(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    return [(one(), one()) for _ in range(steps)]


def run(net, batches):
    for valid, train in batches:
        net.arch_step(*valid)
        net.weight_step(*train)


def assert_same_bits(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"{len(differ)} tensors differ, first {differ[:3]}"
    for name in ("opt_w", "opt_a"):
        oa, ob = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
        assert oa.keys() == ob.keys() and oa, name
        for i in oa:
            assert oa[i].keys() == ob[i].keys()
            for key in oa[i]:
                assert torch.equal(torch.as_tensor(oa[i][key]), torch.as_tensor(ob[i][key])), (name, i, key)


def test_foreach_steps_give_the_per_tensor_bits(clip_as):
    batches = data(3)
    fast = stage()
    run(fast, batches)
    slow = stage()
    per_tensor_optimisers(slow)
    clip_as(foreach=False)
    run(slow, batches)
    # the comparison only means something if the states hold what the steps wrote
    assert set(fast.opt_w.state_dict()["state"][0]) == {"momentum_buffer"}
    assert set(fast.opt_a.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert int(fast.opt_a.state_dict()["state"][0]["step"]) == len(batches)
    assert_same_bits(fast, slow)


def test_a_checkpoint_from_before_foreach_resumes_on_foreach_with_the_same_bits(clip_as):
    batches = data(3, seed=1)
    old = stage()
    per_tensor_optimisers(old, foreach=None)  # the optimisers and clipping as they were built before
    clip_as(foreach=None)
    run(old, batches[:1])
    buf = io.BytesIO()
    torch.save(old.state_dict(), buf)  # through bytes, as checkpoints are written and read
    saved = torch.load(io.BytesIO(buf.getvalue()), map_location="cpu", weights_only=True)
    assert {g["foreach"] for o in ("opt_w", "opt_a") for g in saved[o]["param_groups"]} == {None}
    run(old, batches[1:])

    clip_as()
    new = stage()
    new.load_state_dict(saved)
    assert all(g["foreach"] is True for g in new.opt_w.param_groups + new.opt_a.param_groups)
    sgd: list = []
    new.opt_w.step = counted(new.opt_w.step, sgd)
    run(new, batches[1:])
    assert len(sgd) == 2 and all(len(calls) < FEW and "_foreach_add_" in calls for calls in sgd)
    assert_same_bits(new, old)


# ------------------------------------------------------------------ dispatch counts


def optimiser_calls(cells, foreach, clip_as):
    """ATen calls of the second full step's clipping (alphas, then weights), SGD step and Adam
    step (momentum buffers and Adam moments exist by then): Stage's own, or per tensor."""
    net = stage(cells, kernels="batched", st=3)
    if not foreach:
        per_tensor_optimisers(net)
    batches = data(2, seed=2)
    run(net, batches[:1])
    log: dict = {"clip": [], "sgd": [], "adam": []}
    clip_as(foreach=AS_CALLED if foreach else False, log=log["clip"])
    net.opt_w.step = counted(net.opt_w.step, log["sgd"])
    net.opt_a.step = counted(net.opt_a.step, log["adam"])
    run(net, batches[1:])
    clip_as()
    (clip_alphas, clip_weights), (sgd,), (adam,) = log["clip"], log["sgd"], log["adam"]
    return {
        "tensors": len(net.weights),
        "clip_alphas": clip_alphas,
        "clip": clip_weights,
        "sgd": sgd,
        "adam": adam,
    }


def test_foreach_dispatches_a_constant_number_of_calls(clip_as):
    small, large = optimiser_calls(5, True, clip_as), optimiser_calls(8, True, clip_as)
    slow_small, slow_large = optimiser_calls(5, False, clip_as), optimiser_calls(8, False, clip_as)
    assert large["tensors"] > small["tensors"] > 100
    for part in ("clip_alphas", "clip", "sgd", "adam"):
        assert len(small[part]) == len(large[part]) < FEW, (part, small[part])
    assert sum(name.startswith("_foreach_") for name in small["sgd"]) >= 3
    # the per-tensor implementations: a few calls per tensor, growing with the network
    for part in ("clip", "sgd"):
        assert len(slow_small[part]) >= 2 * small["tensors"], part
        assert len(slow_large[part]) - len(slow_small[part]) >= 2 * (large["tensors"] - small["tensors"]), (
            part
        )
