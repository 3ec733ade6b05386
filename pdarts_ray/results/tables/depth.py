"""Figure 3 and section 4.4.1: the cells found after stage 1, 2 and 3 of a search.

Needs: the preset's search per seed (`--repeats`; its stage genotypes, each refined to the
preset's M) and a retraining of each stage cell and of DARTS_V2. Renders: per cell its
search depth, skip-connects, the paper's error and ours (mean ± std over seeds); bars per
cell; the effects: later stages find other cells, read intermediate nodes more and retrain
better.

The paper's context and the commands: pdarts_ray/experiments/depth.py.
"""

from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (
    EvalNeed,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    deep_inputs,
    error_pct,
    genes_changed,
    mean_or_none,
    notes,
    per_seed,
    published_text,
    published_value,
    resolution,
    search_need,
    seeds_note,
    skip_count,
    split_note,
    spread,
)
from .effects import Effect, differ, difference


def spec(setup: Setup) -> TableSpec:
    """The cells derived after stage 1, 2 and 3 of a search (one per seed), each retrained,
    beside DARTS V2."""
    from ...evaluation.genotypes import DARTS_V2

    needs = [search_need(setup, seed=s) for s in setup.repeat_seeds()]
    stages = len(setup.base["cells"])
    darts = DARTS_V2.to_dict()

    def stage_genotypes(store: StoreView) -> list[list[dict | None]]:
        """Per seed, the cell of each stage."""
        out = []
        for need in needs:
            row = store.search(need)
            out.append([json.loads(g) for g in row["stage_genotypes"]] if row else [None] * stages)
        return out

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = [
            EvalNeed(g, setup.label(need.config["seed"], f"stage {i + 1}"))
            for need, gs in zip(needs, stage_genotypes(store))
            for i, g in enumerate(gs)
            if g is not None
        ]
        return out + [EvalNeed(darts, "DARTS_V2")]

    def build(store: StoreView) -> Rendered:
        by_seed = stage_genotypes(store)
        several = len(needs) > 1
        rows, ours, published = [], [], []
        errors, deep = [], []
        for i in range(stages):
            label = f"stage {i + 1}"
            gs = [gs[i] for gs in by_seed]
            errs = [error_pct(store, setup, g) for g in gs]
            errors.append(errs)
            deep.append([deep_inputs(g) for g in gs])
            p = paper.DEPTH_ERROR_PCT.get(label)
            rows.append(
                [
                    label,
                    str(setup.base["cells"][i]),
                    spread([skip_count(g) for g in gs]),
                    published_text(p),
                    spread(errs),
                ]
                + ([per_seed(errs)] if several else [])
            )
            ours.append(mean_or_none(errs))
            published.append(published_value(p))
        darts_err = error_pct(store, setup, darts)
        p = paper.DEPTH_ERROR_PCT["DARTS_V2"]
        rows.append(
            ["DARTS_V2", "8 (DARTS search)", str(skip_count(darts)), published_text(p), spread([darts_err])]
            + (["(one cell)"] if several else [])
        )
        ours.append(darts_err)
        published.append(published_value(p))
        extra = [
            f"Stage cells are refined to M = {setup.base['skip_connects']}, as the search writes them; "
            f"every cell is retrained with {setup.eval_preset}."
        ]
        extra += seeds_note(setup) + split_note(setup, [e for errs in errors for e in errs])
        effects = [
            Effect(
                "normal-cell genes that differ, last-stage cell against stage-1 cell, less those that "
                "differ between this seed's last-stage cell and the other seeds' (of 8)",
                "each stage finds a different cell (Figure 3)",
                +1,
                beyond_seed_noise(by_seed),
            ),
            Effect(
                "normal-cell genes reading an intermediate node, last stage - stage 1",
                "deeper searches pick intermediate nodes (Figure 3)",
                +1,
                difference(deep[0], deep[-1]),
            ),
            Effect(
                "error (%), last-stage cell - stage-1 cell",
                "2.58 - 2.90 = -0.32",
                -1,
                difference(errors[0], errors[-1]),
                paper_effect=-0.32,
                resolution=resolution(setup, errors[0] + errors[-1]),
                acted=differ([gs[0] for gs in by_seed], [gs[-1] for gs in by_seed]),
            ),
        ]
        columns = ["cell", "search cells", "skip-connects", "paper error (%)", "our error (%)"]
        return Rendered(
            "depth",
            "Figure 3: cells of each search stage, retrained",
            notes(setup, extra),
            columns + (["our error per seed (%)"] if several else []),
            rows,
            {
                "groups": [r[0] for r in rows],
                "series": {"paper": published, "ours": ours},
                "ylabel": "test error (%)",
            },
            effects=effects,
        )

    return TableSpec(
        "depth",
        "cells of each search stage",
        "pdarts-ray reproduce depth --preset paper",
        "Figure 3, section 4.4.1",
        needs,
        evaluations,
        build,
    )


def beyond_seed_noise(by_seed: list[list[dict | None]]) -> list[float | None]:
    """Per seed: genes its stages changed (stage 1 -> last) less the genes by which its
    last-stage cell differs, on average, from the other seeds' last-stage cells, the
    difference a new seed makes alone. None with a single seed (no noise to compare with)."""
    if len(by_seed) < 2:
        return [None] * len(by_seed)
    out = []
    for i, gs in enumerate(by_seed):
        across = [genes_changed(gs[-1], other[-1]) for j, other in enumerate(by_seed) if j != i]
        within = genes_changed(gs[0], gs[-1])
        out.append(None if within is None or None in across else within - sum(across) / len(across))
    return out
