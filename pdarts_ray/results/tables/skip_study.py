"""The skip-connect study: do skip-connects accumulate with depth and architecture steps,
does skip dropout hold them down, and does refinement to M then change the cell?

Needs: two searches per seed (`--repeats`; skip dropout 0.0/0.0/0.0 and 0.0/0.3/0.6),
no retraining. Renders: per setting and seed the normal cell's skip-connects before
refinement at the end of each stage, the skip-connect weight (mean softmax weight of
skip_connect on the edges that hold it) at each stage's end, the last stage's skip-connects
after 128 architecture steps (a `small` stage) and at its end, and the genes refinement to
M = 2 changes; the effects test each claim, paired by seed. Its curves: the skip-connect
weight at every epoch's end, one line per search.

The paper's context and the commands: pdarts_ray/experiments/skip_study.py.
"""

from __future__ import annotations

import math

from .common import (
    DROPOUT,
    NO_DROPOUT,
    Rendered,
    SearchNeed,
    Setup,
    StoreView,
    TableSpec,
    fmt,
    genes_changed,
    genotype_of_m,
    mean_or_none,
    notes,
    rates,
    search_need,
    skip_count,
    spread,
    train_images,
)
from .effects import Effect, difference

SETTINGS = (("without skip dropout", NO_DROPOUT), ("with skip dropout 0.0/0.3/0.6", DROPOUT))
EARLY_STEPS = 128  # a `small` stage's architecture steps


def arch_steps_per_epoch(config: dict) -> int | None:
    """Architecture steps in one epoch after warm-up: one per batch of the search's half
    (None for a dataset of the user's, whose size is not known here)."""
    images = train_images(config)
    if images is None:
        return None
    return math.ceil(math.floor(config["train_portion"] * images) / config["batch_size"])


def epoch_after(config: dict, steps: int) -> int | None:
    """The epoch (0-based, within a stage) after which the alphas have taken `steps` steps;
    None where a stage is shorter or the steps per epoch are not known."""
    per_epoch = arch_steps_per_epoch(config)
    if per_epoch is None:
        return None
    epoch = config["warmup_epochs"] + math.ceil(steps / per_epoch) - 1
    return epoch if epoch < config["epochs"] else None


def spec(setup: Setup) -> TableSpec:
    """Two searches per seed, without and with skip dropout; nothing retrained."""
    stages = len(setup.base["cells"])
    seeds = setup.repeat_seeds()
    settings = [
        (label, [search_need(setup, skip_dropout=rates(values, stages), seed=s) for s in seeds])
        for label, values in SETTINGS
    ]
    config = settings[0][1][0].config
    per_epoch = arch_steps_per_epoch(config)
    steps = None if per_epoch is None else (config["epochs"] - config["warmup_epochs"]) * per_epoch
    early = epoch_after(config, EARLY_STEPS)

    def epochs_by_trial(store: StoreView) -> dict[str, dict[tuple[int, int], dict]]:
        """Epoch rows of every search the table needs, each sweep read once."""
        from ..store import read_epochs

        rows = [r for _, needs in settings for n in needs if (r := store.search(n)) is not None]
        out: dict[str, dict[tuple[int, int], dict]] = {r["trial_id"]: {} for r in rows}
        for experiment in sorted({r["experiment"] for r in rows}):
            for e in read_epochs(store.root, experiment).to_pylist():
                if e["trial_id"] in out:
                    out[e["trial_id"]][(e["stage"], e["epoch"])] = e
        return out

    def measure(store: StoreView, need: SearchNeed, by_trial: dict) -> dict:
        row = store.search(need)
        epochs = by_trial.get(row["trial_id"], {}) if row is not None else {}
        last = config["epochs"] - 1

        def at(stage: int, epoch: int | None, key: str):
            return None if epoch is None else (epochs.get((stage, epoch)) or {}).get(key)

        before = genotype_of_m(row, 8)
        return {
            "per_stage": (row or {}).get("stage_skip_connects_before_refinement") or [None] * stages,
            "weight": [at(s + 1, last, "skip_weight_now") for s in range(stages)],
            "early": at(stages, early, "skip_connects_now"),
            "early_weight": at(stages, early, "skip_weight_now"),
            "final_weight": at(stages, last, "skip_weight_now"),
            "trajectory": [
                at(s, e, "skip_weight_now") for s in range(1, stages + 1) for e in range(last + 1)
            ],
            "changed": genes_changed(before, genotype_of_m(row, setup.base["skip_connects"])),
            "before": skip_count(before),
        }

    def build(store: StoreView) -> Rendered:
        rows, measured, by_trial = [], {}, epochs_by_trial(store)
        for label, needs in settings:
            measured[label] = [measure(store, n, by_trial) for n in needs]
            for need, m in zip(needs, measured[label]):
                rows.append(
                    [
                        label,
                        str(need.config["seed"]),
                        "-".join(fmt(v) for v in m["per_stage"]),
                        " / ".join(fmt(v, 3) for v in m["weight"]),
                        f"{fmt(m['early'])} → {fmt(m['per_stage'][-1])}",
                        fmt(m["changed"]),
                    ]
                )
            ms = measured[label]
            rows.append(
                [
                    label,
                    "mean ± std",
                    " / ".join(spread([m["per_stage"][s] for m in ms]) for s in range(stages)),
                    " / ".join(spread([m["weight"][s] for m in ms], 3) for s in range(stages)),
                    f"{spread([m['early'] for m in ms])} → {spread([m['per_stage'][-1] for m in ms])}",
                    spread([m["changed"] for m in ms]),
                ]
            )
        none, held = (measured[label] for label, _ in SETTINGS)
        m_value = setup.base["skip_connects"]
        effects = [
            Effect(
                "skip-connects without skip dropout, last stage - stage 1",
                "accumulate as the search deepens (section 3.2.2)",
                +1,
                difference([m["per_stage"][0] for m in none], [m["per_stage"][-1] for m in none]),
            ),
            Effect(
                f"skip-connects without skip dropout in the last stage, after {steps} - after "
                f"{EARLY_STEPS} architecture steps",
                "accumulate as the alphas train on (section 3.2.2)",
                +1,
                difference([m["early"] for m in none], [m["per_stage"][-1] for m in none]),
            ),
            Effect(
                f"skip-connect weight without skip dropout in the last stage, after {steps} - after "
                f"{EARLY_STEPS} architecture steps",
                "the skip-connect's alpha grows (section 3.2.2)",
                +1,
                difference([m["early_weight"] for m in none], [m["final_weight"] for m in none]),
            ),
            Effect(
                "skip-connects before refinement, without - with skip dropout",
                "8 - 4 = +4",
                +1,
                difference([m["per_stage"][-1] for m in held], [m["per_stage"][-1] for m in none]),
                paper_effect=4.0,
                acted=[m["per_stage"][-1] is None or m["per_stage"][-1] > 0 for m in none],
            ),
            Effect(
                f"normal-cell genes changed by refinement to M = {m_value}, without skip dropout (of 8)",
                "cells with more than M skip-connects change (section 4.4.3)",
                +1,
                [m["changed"] for m in none],
                acted=[m["before"] is None or m["before"] > m_value for m in none],
            ),
        ]
        extra = [
            f"Stages of {config['epochs']} epochs, {config['warmup_epochs']} of them warm-up: "
            f"{fmt(steps)} architecture steps a stage ({fmt(per_epoch)} an epoch; the "
            f"paper's take about 3,900). Skip-connects are the normal cell's before refinement; "
            f"weight: the mean softmax weight of skip_connect on the edges that hold it; refinement "
            f"to M = {m_value}. Searches with seeds {', '.join(map(str, seeds))}, one thread each.",
        ]
        groups = [f"stage {s + 1}" for s in range(stages)]
        return Rendered(
            "skip-study",
            "Skip-connects over depth and architecture steps, without and with skip dropout",
            notes(setup, extra),
            [
                "setting",
                "seed",
                "skip-connects per stage",
                "skip-connect weight per stage",
                f"last stage: skip-connects after {EARLY_STEPS} → {steps} steps",
                f"genes changed by refinement to M = {m_value}",
            ],
            rows,
            {
                "groups": groups,
                "series": {
                    label: [mean_or_none([m["weight"][s] for m in measured[label]]) for s in range(stages)]
                    for label, _ in SETTINGS
                },
                "ylabel": "skip-connect weight at the stage's end",
            },
            effects=effects,
            curves={
                "title": "Skip-connect weight in the normal cell over the search, per seed",
                "groups": {label: [m["trajectory"] for m in measured[label]] for label, _ in SETTINGS},
                "xlabel": f"epoch, all stages ({config['warmup_epochs']} warm-up epochs a stage, then "
                f"{fmt(per_epoch)} architecture steps an epoch)",
                "ylabel": "skip-connect weight at the epoch's end",
                "stage_starts": [1 + s * config["epochs"] for s in range(stages)],
            },
        )

    return TableSpec(
        "skip-study",
        "skip-connects over depth and steps",
        "pdarts-ray reproduce skip-study --preset study",
        "sections 3.2.2 and 4.4.3",
        [n for _, needs in settings for n in needs],
        lambda store: [],
        build,
    )
