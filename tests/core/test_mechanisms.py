"""Every mechanism of the search loop, pinned by watching a real search run.

One small three-stage search runs with hyper-parameters unlike any default (so a value
that stops reaching its optimiser shows), a gradient clip so small that clipping is
always active, and data whose labels say which half of the training set a batch came
from (train half: classes 0-1; valid half: classes 2-3). A recorder watches, without
changing anything, what PyTorch is asked to do: every loss (and which half its labels
come from), every optimiser step (its hyper-parameters, the gradient norm it sees,
whether its state is fresh, the parameters it holds), every skip-dropout mask drawn, and
the end of every epoch. Each test below then checks one mechanism of the paper's loop
against numbers computed here from the paper's formulas, not from the code under test.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from pdarts_ray.core import kernels, supernet
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.data import ImageData
from pdarts_ray.core.hooks import SearchHooks
from pdarts_ray.core.search import ProgressiveSearch, initial_switches
from pdarts_ray.core.space import NODE_OFFSETS, NUM_EDGES, STEPS, full_switches
from pdarts_ray.core.stage import Stage, StagePlan
from pdarts_ray.core.supernet import SearchCell

EPOCHS, WARMUP = 4, 2
SETTINGS = dict(
    lr=0.05,
    lr_min=0.002,
    momentum=0.7,
    weight_decay=1e-3,
    arch_lr=2e-3,
    arch_weight_decay=3e-3,
    arch_beta1=0.3,
    arch_beta2=0.95,
    grad_clip=1e-4,
    epochs=EPOCHS,
    warmup_epochs=WARMUP,
    skip_dropout=[0.2, 0.4, 0.6],
    batch_size=16,
    seed=7,
)
IMAGES = 64  # 32 per half: 2 batches of 16 per epoch


def paper_lr(epoch: int) -> float:
    """The cosine schedule stepped at the start of each epoch: epoch e uses step e + 1."""
    lr, lr_min = SETTINGS["lr"], SETTINGS["lr_min"]
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * (epoch + 1) / EPOCHS)) / 2


def paper_skip_dropout(rate: float, epoch: int) -> float:
    if epoch < WARMUP:
        return rate * (EPOCHS - epoch - 1) / EPOCHS
    return rate * math.exp(-0.2 * (epoch - WARMUP))


class Recorder(SearchHooks):
    """What the search asked of PyTorch, in order."""

    def __init__(self):
        self.events = []
        self.epoch = None

    def on_stage_start(self, stage, num_stages, cells, ops, epochs):
        self.events.append(("stage", stage))

    def on_epoch_end(self, metrics, checkpoint):
        self.events.append(("epoch_end", metrics["stage"], metrics["epoch"], metrics))


def _half(target: torch.Tensor) -> str:
    if bool((target < 2).all()):
        return "train"
    if bool((target >= 2).all()):
        return "valid"
    return "mixed"


def _grad_norm(params) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    return (
        float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        if grads
        else 0.0
    )


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke", sets=[f"{k}={v}" for k, v in SETTINGS.items()])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.cat(
        [torch.randint(0, 2, (IMAGES // 2,), generator=g), torch.randint(2, 4, (IMAGES // 2,), generator=g)]
    )
    data = ImageData("halves", images, labels, None, None, 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    recorder = Recorder()
    events = recorder.events
    mp = pytest.MonkeyPatch()
    real_ce, real_sgd, real_adam = F.cross_entropy, torch.optim.SGD.step, torch.optim.Adam.step
    real_mask = kernels.dropout_mask

    def cross_entropy(input, target, *args, **kwargs):
        events.append(("loss", _half(target), torch.is_grad_enabled()))
        return real_ce(input, target, *args, **kwargs)

    def optimiser_step(kind, real):
        def step(self, *args, **kwargs):
            params = [p for group in self.param_groups for p in group["params"]]
            group = self.param_groups[0]
            events.append(
                (
                    kind,
                    {
                        k: group[k]
                        for k in ("lr", "momentum", "weight_decay", "betas", "nesterov")
                        if k in group
                    },
                    _grad_norm(params),
                    not any(self.state.get(p) for p in params),
                    id(self),
                    [p.detach().clone() for p in params],
                )
            )
            return real(self, *args, **kwargs)

        return step

    def dropout_mask(x, keep):
        events.append(("dropout", keep))
        return real_mask(x, keep)

    mp.setattr(torch.nn.functional, "cross_entropy", cross_entropy)
    mp.setattr(torch.optim.SGD, "step", optimiser_step("sgd", real_sgd))
    mp.setattr(torch.optim.Adam, "step", optimiser_step("adam", real_adam))
    mp.setattr(kernels, "dropout_mask", dropout_mask)
    mp.setattr(supernet, "dropout_mask", dropout_mask)
    try:
        search = ProgressiveSearch.create(cfg, tmp_path_factory.mktemp("watched") / "run", recorder)
        result = search.run(data=data)
    finally:
        mp.undo()
    return {"cfg": search.cfg, "events": events, "result": result, "run_dir": search.run_dir}


def _epochs(watched):
    """The events of every training epoch, by (stage, epoch): validation's losses left out."""
    out, current = {}, []
    for event in watched["events"]:
        if event[0] == "stage":
            current = []
        elif event[0] == "epoch_end":
            out[(event[1], event[2])] = [e for e in current if not (e[0] == "loss" and not e[2])]
            current = []
        else:
            current.append(event)
    return out


def _steps(events):
    return [e for e in events if e[0] in ("sgd", "adam")]


def test_warm_up_epochs_train_the_weights_only(watched):
    for (stage, epoch), events in _epochs(watched).items():
        kinds = [e[0] for e in _steps(events)]
        assert kinds, (stage, epoch)
        if epoch < WARMUP:
            assert set(kinds) == {"sgd"}, (stage, epoch)
        else:
            assert kinds == ["adam", "sgd"] * (len(kinds) // 2), (stage, epoch)


def test_warm_up_leaves_the_alphas_where_they_were_drawn(watched):
    """The alphas after every warm-up epoch are the stage's initial ones, bit for bit."""
    import json

    cfg = watched["cfg"]
    trajectory = [
        json.loads(line) for line in (watched["run_dir"] / "alpha_trajectory.jsonl").read_text().splitlines()
    ]
    first = Stage(
        cfg,
        StagePlan(0, cfg.cells[0], cfg.ops_kept[0], cfg.skip_dropout[0], False),
        initial_switches(cfg),
        4,
        torch.device("cpu"),
    )
    drawn = [a.detach().tolist() for a in first.alphas]
    stage1 = [row for row in trajectory if row["stage"] == 1]
    for row in stage1[:WARMUP]:
        assert [row["normal"], row["reduce"]] == drawn
    assert [stage1[WARMUP]["normal"], stage1[WARMUP]["reduce"]] != drawn


def test_the_architecture_step_comes_first_and_reads_the_valid_half(watched):
    for (_stage, epoch), events in _epochs(watched).items():
        pairs = [
            (e[0], e[1]) if e[0] == "loss" else (e[0],) for e in events if e[0] in ("loss", "sgd", "adam")
        ]
        if epoch < WARMUP:
            assert pairs == [("loss", "train"), ("sgd",)] * (len(pairs) // 2)
        else:
            assert pairs == [("loss", "valid"), ("adam",), ("loss", "train"), ("sgd",)] * (len(pairs) // 4)


def test_the_weight_optimiser_gets_the_configured_hyper_parameters_and_the_schedule(watched):
    for (_stage, epoch), events in _epochs(watched).items():
        for e in _steps(events):
            if e[0] == "sgd":
                assert e[1]["lr"] == pytest.approx(paper_lr(epoch), rel=1e-12)
                assert (
                    e[1]["momentum"] == SETTINGS["momentum"]
                    and e[1]["weight_decay"] == SETTINGS["weight_decay"]
                )
                assert e[1]["nesterov"] is False


def test_the_logged_learning_rate_is_the_schedule(watched):
    rows = [e[3] for e in watched["events"] if e[0] == "epoch_end"]
    assert [r["lr"] for r in rows] == pytest.approx([paper_lr(r["epoch"]) for r in rows], rel=1e-12)


def test_the_alpha_optimiser_gets_the_configured_hyper_parameters(watched):
    adam = [e for events in _epochs(watched).values() for e in _steps(events) if e[0] == "adam"]
    assert adam
    for e in adam:
        assert e[1]["lr"] == SETTINGS["arch_lr"]
        assert tuple(e[1]["betas"]) == (SETTINGS["arch_beta1"], SETTINGS["arch_beta2"])
        assert e[1]["weight_decay"] == SETTINGS["arch_weight_decay"]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_gradients_are_clipped_to_the_global_norm(watched, kind):
    norms = [e[2] for events in _epochs(watched).values() for e in _steps(events) if e[0] == kind]
    assert norms and all(0 < n <= SETTINGS["grad_clip"] * (1 + 1e-5) for n in norms)
    assert max(norms) == pytest.approx(SETTINGS["grad_clip"], rel=1e-4)  # clipped, not merely small


def test_skip_dropout_runs_in_both_steps_at_the_scheduled_rate(watched):
    cfg = watched["cfg"]
    for (stage, epoch), events in _epochs(watched).items():
        rate = cfg.skip_dropout[stage - 1]
        expected_keep = 1 - paper_skip_dropout(rate, epoch)
        # between two optimiser steps: the forward pass that drew masks, then its loss
        segments, current = [], []
        for e in events:
            current.append(e)
            if e[0] in ("sgd", "adam"):
                segments.append(current)
                current = []
        for segment in segments:
            draws = [e[1] for e in segment if e[0] == "dropout"]
            step = segment[-1][0]
            if rate > 0:
                assert draws, (stage, epoch, step)
                assert all(k == pytest.approx(expected_keep, rel=1e-12) for k in draws), (stage, epoch, step)
            else:
                assert draws == [], (stage, epoch, step)


def test_every_stage_starts_from_a_fresh_network_and_fresh_optimisers(watched):
    import json

    cfg = watched["cfg"]
    switches = json.loads((watched["run_dir"] / "alphas.json").read_text())
    epochs = _epochs(watched)
    ids = {}
    for stage in (1, 2, 3):
        first_sgd = _steps(epochs[(stage, 0)])[0]
        first_adam = _steps(epochs[(stage, WARMUP)])[0]
        assert first_sgd[0] == "sgd" and first_adam[0] == "adam"
        assert first_sgd[3] and first_adam[3], f"stage {stage}: optimiser state carried over"
        ids[stage] = (first_sgd[4], first_adam[4])
        stage_switches = (
            initial_switches(cfg)
            if stage == 1
            else {cell: switches[f"stage{stage}"][cell]["switches"] for cell in ("normal", "reduce")}
        )
        fresh = Stage(
            cfg,
            StagePlan(
                stage - 1,
                cfg.cells[stage - 1],
                cfg.ops_kept[stage - 1],
                cfg.skip_dropout[stage - 1],
                stage == 3,
            ),
            stage_switches,
            4,
            torch.device("cpu"),
        )
        assert all(torch.equal(a, b) for a, b in zip(first_sgd[5], fresh.weights)), f"stage {stage}: weights"
        assert all(torch.equal(a, b) for a, b in zip(first_adam[5], fresh.alphas)), f"stage {stage}: alphas"
    assert len({i for pair in ids.values() for i in pair}) == 6


@pytest.mark.parametrize("kernels_path", ["lean", "reference"])
@pytest.mark.parametrize("reduction", [False, True])
def test_the_search_cell_wires_and_concatenates_as_the_paper_says(kernels_path, reduction):
    """Node i sums one edge from every earlier state j (edge OFFSETS[i] + j); the cell's output
    concatenates the four nodes, computed here edge by edge."""
    torch.manual_seed(0)
    C = 4
    cell = SearchCell(3 * C, 3 * C, C, reduction, False, full_switches(), 0.0).train()
    s0, s1 = torch.randn(2, 3 * C, 8, 8), torch.randn(2, 3 * C, 8, 8)
    weights = torch.softmax(torch.randn(NUM_EDGES, 8), dim=-1)
    with torch.no_grad():
        out = cell(s0, s1, weights, kernels_path, True)
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        for node in range(STEPS):
            states.append(
                sum(
                    cell.edges[NODE_OFFSETS[node] + j](states[j], weights[NODE_OFFSETS[node] + j])
                    for j in range(2 + node)
                )
            )
        expected = torch.cat(states[2:], dim=1)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
