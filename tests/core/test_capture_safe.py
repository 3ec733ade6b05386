"""The parts of a search step a CUDA graph would hold are capture-safe, checked on CPU by
recording every ATen call: the architecture step's forward, backward and clipping (Adam's
step on the two alphas stays eager and is left out), and the whole weight step (forward,
backward, clipping, SGD update).

- No host-device synchronisation: nothing reads a tensor's value on the host (`item`,
  `bool(tensor)`, `tolist`, ...), nothing has a data-dependent output shape (`nonzero`,
  boolean-mask indexing, `unique`, ...), nothing uploads host data (`torch.tensor(...)`).
- Two consecutive steps of an epoch, once optimiser states exist, dispatch the same
  operators on the same shapes, strides and scalar arguments: a graph captured on one step
  replays the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pdarts_ray.core.bench import bench_config, harness_stage

CPU = torch.device("cpu")
SIZE, BATCH, CELLS = 8, 2, 5

# ATen operators that read device values on the host or size their output by them
SYNC_OPS = {
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "nonzero",
    "argwhere",
    "equal",
    "allclose",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "unique_dim_consecutive",
    "bincount",
    "_to_cpu",
}
# tensors made from host data: on a GPU an upload from pageable memory, illegal while capturing
UPLOAD_OPS = {"lift_fresh", "lift_fresh_copy", "_lift_fresh_copy"}
# indexing with a boolean mask runs `nonzero` inside the kernel, out of the recorder's sight
INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index", "_unsafe_index_put"}
# host reads that dispatch no ATen operator on a CPU tensor
HOST_READS = ("tolist", "numpy", "cpu", "__array__")


@dataclass(frozen=True)
class Call:
    op: str
    signature: tuple  # shapes, dtypes, strides and non-tensor arguments; no tensor values
    sync: str | None = None  # why this call would stall the host, if it does


PLAIN = (type(None), bool, int, str, torch.dtype, torch.device, torch.memory_format, torch.layout)


def signature(value):
    kind = type(value)
    if kind in PLAIN:
        return value
    if kind is float:
        return ("float", value.hex())  # exact, and nan equals nan
    if kind is list or kind is tuple:
        return tuple(map(signature, value))
    if isinstance(value, torch.Tensor):
        return ("tensor", value.shape, value.dtype, value.stride(), value.storage_offset(), value.device.type)
    if isinstance(value, dict):
        return tuple((k, signature(v)) for k, v in sorted(value.items()))
    return kind.__name__  # generators, profiler handles: their state is not an argument's shape


def sync_reason(name: str, args, kwargs) -> str | None:
    if name in SYNC_OPS:
        return "reads a device value on the host"
    if name in UPLOAD_OPS:
        return "makes a tensor from host data"
    if name in INDEX_OPS:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices or ()):
            return "indexes with a boolean mask"
    if (
        name == "repeat_interleave"
        and isinstance(args[0] if args else None, torch.Tensor)
        and kwargs.get("output_size") is None
        and (len(args) < 3 or args[2] is None)
    ):
        return "repeat_interleave without output_size"
    return None


class Recorder(TorchDispatchMode):
    """Every ATen call while active (and not paused), with its signature; host reads that
    dispatch nothing on CPU (`tolist`, `numpy`, ...) are recorded too."""

    def __init__(self):
        super().__init__()
        self.calls: list[Call] = []
        self.paused = False
        self._saved: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            name = func.overloadpacket.__name__
            self.calls.append(
                Call(func.name(), (signature(args), signature(kwargs)), sync_reason(name, args, kwargs))
            )
        return func(*args, **kwargs)

    def __enter__(self):
        for name in HOST_READS:
            self._saved[name] = torch.Tensor.__dict__.get(name)
            setattr(torch.Tensor, name, self._host_read(name, getattr(torch.Tensor, name)))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)
        self._saved = {}
        return super().__exit__(*exc)

    def _host_read(self, name, method):
        def read(tensor, *args, **kwargs):
            if not self.paused:
                self.calls.append(Call(f"Tensor.{name}", (signature(tensor),), "reads a tensor on the host"))
            return method(tensor, *args, **kwargs)

        return read

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


def syncs(calls: list[Call]) -> list[str]:
    return [f"#{i} {c.op}: {c.sync}" for i, c in enumerate(calls) if c.sync]


def first_difference(a: list[Call], b: list[Call]) -> str | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"call #{i}: {x.op} {x.signature} vs {y.op} {y.signature}"
    if len(a) != len(b):
        return f"{len(a)} calls vs {len(b)}"
    return None


# ------------------------------------------------------------------ a stage's steps, recorded


def batches(steps, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return torch.randn(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    return [(one(), one()) for _ in range(steps)]


def record_steps(net, data, warmup=1) -> list[dict[str, list[Call]]]:
    """Per full step after `warmup` unrecorded ones: the calls of the architecture step without
    Adam's step, and of the weight step."""
    for valid, train in data[:warmup]:
        net.arch_step(*valid)
        net.weight_step(*train)
    recorder = Recorder()
    adam_step = net.opt_a.step

    def eager_adam(*args, **kwargs):  # not part of a graph: its calls are not recorded
        recorder.paused = True
        try:
            return adam_step(*args, **kwargs)
        finally:
            recorder.paused = False

    net.opt_a.step = eager_adam
    steps = []
    try:
        with recorder:
            for valid, train in data[warmup:]:
                net.arch_step(*valid)
                arch = recorder.take()
                net.weight_step(*train)
                steps.append({"arch": arch, "weight": recorder.take()})
    finally:
        del net.opt_a.step
    return steps


def small_stage(kernels, stage, cells=CELLS):
    cfg = bench_config(batch=BATCH, device="cpu", kernels=kernels, image_size=SIZE)
    return harness_stage(stage, cfg, CPU, cells=cells)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: threads only add contention
    yield
    torch.set_num_threads(threads)


@pytest.fixture(
    scope="module",
    params=[(k, s) for k in ("reference", "lean", "batched") for s in (1, 3)],
    ids=lambda p: f"{p[0]}-stage{p[1]}",
)
def recorded(request, _one_thread):
    """Two full steps of one epoch (lr, skip-dropout rate and masks fixed) recorded after a
    first one: from then on optimiser states exist, and a graph would be captured."""
    kernels, stage = request.param
    return record_steps(small_stage(kernels, stage), batches(3))


def profiled(calls: list[Call]) -> set[str]:
    """The regions PyTorch marks with record_function (optimiser steps, zero_grad) among the calls."""
    return {c.signature[0][0] for c in calls if c.op.startswith("profiler::_record_function_enter")}


def test_graph_parts_do_not_synchronise(recorded):
    for i, step in enumerate(recorded, 2):
        # what each part holds: clipping in both, SGD's step in the weight step, never Adam's
        for part, calls in step.items():
            assert any(c.op.startswith("aten::_foreach_norm") for c in calls), part
        assert "Optimizer.step#SGD.step" in profiled(step["weight"])
        assert not any("Adam.step" in region for region in profiled(step["arch"]))
        for part, calls in step.items():
            found = syncs(calls)
            assert not found, f"step {i}, {part} step: {found[:5]}"


def test_consecutive_steps_dispatch_the_same_calls(recorded):
    for part in ("arch", "weight"):
        diff = first_difference(recorded[0][part], recorded[1][part])
        assert diff is None, f"{part} step: {diff}"


# ------------------------------------------------------------------ the recorder catches what it should


@pytest.mark.parametrize(
    "insert",
    ["item", "float", "if-tensor", "tolist", "nonzero", "mask-index", "unique", "equal", "new-tensor"],
)
def test_the_recorder_catches_a_sync(insert):
    x = torch.randn(6)
    actions = {
        "item": lambda: x.sum().item(),
        "float": lambda: float(x.max()),
        "if-tensor": lambda: 1 if x.sum() else 0,
        "tolist": lambda: x.tolist(),
        "nonzero": lambda: torch.nonzero(x > 0),
        "mask-index": lambda: x[x > 0],
        "unique": lambda: torch.unique(x),
        "equal": lambda: torch.equal(x, x),
        "new-tensor": lambda: torch.tensor([1.0, 2.0]) * x[:2],
    }
    recorder = Recorder()
    with recorder:
        y = x * 2 + 1  # clean
        assert not syncs(recorder.calls)
        actions[insert]()
        y.sum()
    assert syncs(recorder.calls), [c.op for c in recorder.calls]
    assert torch.Tensor.tolist is not None and "tolist" not in torch.Tensor.__dict__  # host reads unpatched


def test_the_recorder_tells_steps_apart():
    def calls(fn, x):
        recorder = Recorder()
        with recorder:
            fn(x)
        return recorder.calls

    def step(x):
        return F.relu(x * 0.5).sum()

    a = calls(step, torch.randn(4, 6))
    assert first_difference(a, calls(step, torch.randn(4, 6))) is None  # values are not compared
    assert first_difference(a, calls(lambda x: F.relu(x * 0.25).sum(), torch.randn(4, 6)))  # a scalar
    assert first_difference(a, calls(step, torch.randn(4, 5)))  # a shape
    assert first_difference(a, calls(step, torch.randn(6, 4).t()))  # a stride
    assert first_difference(a, calls(step, torch.randn(4, 6, dtype=torch.float64)))  # a dtype
    assert first_difference(a, calls(lambda x: F.relu(x * 0.5).mean(), torch.randn(4, 6)))  # an operator


@pytest.mark.parametrize("insert", ["item", "if-tensor", "guarded-update"])
def test_a_sync_inserted_into_a_step_is_caught(insert, monkeypatch):
    net = small_stage("batched", 3, cells=3)
    loss, sgd_step = net._loss, net.opt_w.step

    def logged_loss(logits, y, batch):  # both steps: a logging line reading the loss, or a guard on it
        out = loss(logits, y, batch)
        if insert == "item":
            print(out.item())
        elif out.isnan():
            raise FloatingPointError
        return out

    def guarded_step(*args, **kwargs):  # the weight step only: an update skipped on a zero gradient
        if net.weights[0].grad.abs().sum() > 0:
            sgd_step(*args, **kwargs)

    clean = record_steps(net, batches(2, seed=1))[0]
    if insert == "guarded-update":
        monkeypatch.setattr(net.opt_w, "step", guarded_step)
    else:
        monkeypatch.setattr(net, "_loss", logged_loss)
    dirty = record_steps(net, batches(1, seed=2), warmup=0)[0]
    assert not syncs(clean["arch"]) and not syncs(clean["weight"])
    assert syncs(dirty["weight"])
    assert bool(syncs(dirty["arch"])) == (insert != "guarded-update")


def test_a_learning_rate_changed_between_steps_shows():
    # what a new epoch does: a graph captured before would replay the old rate
    net = small_stage("batched", 3, cells=3)
    before = record_steps(net, batches(2, seed=3))
    for group in net.opt_w.param_groups:
        group["lr"] /= 2
    changed = record_steps(net, batches(1, seed=4), warmup=0)[0]
    assert first_difference(before[0]["arch"], changed["arch"]) is None
    diff = first_difference(before[0]["weight"], changed["weight"])
    assert diff and "_foreach_add_" in diff
