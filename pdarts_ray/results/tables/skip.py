"""Section 4.4.3: a search refined to M = 0..4 skip-connects in the normal cell.

Needs: a search per seed (`--repeats`; shared with `dropout`) and a retraining per distinct
refined cell.
Renders: per M the skip-connects kept, the paper's error and ours, and parameters of the
paper's evaluation network (C = 36, 20 cells) built from each cell.

The paper's context and the commands: pdarts_ray/experiments/skip.py.
"""

from __future__ import annotations

from .. import paper_numbers as paper
from .common import (
    DROPOUT,
    PAPER_NETWORK,
    EvalNeed,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    count_dataset,
    error_pct,
    genotype_of_m,
    mean_or_none,
    notes,
    params_m,
    per_seed,
    published_text,
    published_value,
    rates,
    resolution,
    search_need,
    seeds_note,
    skip_count,
    split_note,
    spread,
)
from .effects import Effect, differ, difference


def spec(setup: Setup) -> TableSpec:
    """A search per seed (skip dropout 0.0/0.3/0.6) refined to M = 0..4, each retrained."""
    needs = [
        search_need(setup, skip_dropout=rates(DROPOUT, len(setup.base["cells"])), seed=s)
        for s in setup.repeat_seeds()
    ]
    ms = (0, 1, 2, 3, 4)
    several = len(needs) > 1

    def evaluations(store: StoreView) -> list[EvalNeed]:
        return [
            EvalNeed(genotype_of_m(row, m), setup.label(need.config["seed"], f"M={m}"))
            for need in needs
            if (row := store.search(need)) is not None
            for m in ms
        ]

    def build(store: StoreView) -> Rendered:
        rows, errs, cells = [], {}, {}
        for m in ms:
            gs = cells[m] = [genotype_of_m(store.search(need), m) for need in needs]
            errs[m] = [error_pct(store, setup, g) for g in gs]
            rows.append(
                [
                    str(m),
                    spread([skip_count(g) for g in gs]),
                    published_text(paper.SKIP_ERROR_PCT[m]),
                    spread(errs[m]),
                    published_text(paper.SKIP_PARAMS_M[m]),
                    spread([params_m(setup, g) for g in gs]),
                ]
                + ([per_seed(errs[m])] if several else [])
            )
        extra = [
            f"Parameters of the paper's evaluation network ({PAPER_NETWORK}, {count_dataset(setup)}) "
            f"built from each cell; errors from retraining with {setup.eval_preset}."
        ]
        extra += seeds_note(setup) + split_note(setup, [e for m in ms for e in errs[m]])
        effects = [
            Effect(
                f"error (%), M = {m} - M = 2",
                f"{paper_text} = {paper_effect:+.2f}",
                +1,
                difference(errs[2], errs[m]),
                paper_effect=paper_effect,
                resolution=resolution(setup, errs[2] + errs[m]),
                acted=differ(cells[2], cells[m]),  # refinement to M left the cell as at M = 2
            )
            for m, paper_text, paper_effect in ((4, "2.97 - 2.69", 0.28), (0, "2.78 - 2.69", 0.09))
        ]
        return Rendered(
            "skip",
            "Section 4.4.3: skip-connects kept (M) after refinement",
            notes(setup, extra),
            [
                "M",
                "our skip-connects",
                "paper error (%)",
                "our error (%)",
                "paper params (M)",
                "our params (M)",
            ]
            + (["our error per seed (%)"] if several else []),
            rows,
            {
                "groups": [f"M = {m}" for m in ms],
                "series": {
                    "paper": [published_value(paper.SKIP_ERROR_PCT[m]) for m in ms],
                    "ours": [mean_or_none(errs[m]) for m in ms],
                },
                "ylabel": "test error (%)",
            },
            effects=effects,
        )

    return TableSpec(
        "skip",
        "skip-connects kept",
        "pdarts-ray reproduce skip --preset paper",
        "section 4.4.3",
        needs,
        evaluations,
        build,
    )
