"""Figure 3 and section 4.4.1: the cells found after stage 1, 2 and 3 of one search.

Paper: retrained, the stage-1/2/3 cells of the CIFAR-10 search score 2.90 / 2.82 / 2.58 %
test error, and DARTS V2 (searched at a fixed depth of 8 cells) 2.83 %: searching deeper
finds better cells.

    pdarts-ray reproduce depth --preset paper

Needs: the preset's search (its stage genotypes, each refined to the preset's M) and four
retrainings: the three stage cells and DARTS_V2. Renders: per cell its search depth,
skip-connects, the paper's error and ours; bars per cell.
"""
from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (EvalNeed, Rendered, Setup, StoreView, TableSpec, error_pct, fmt, notes, published_text,
                     published_value, search_need)


def spec(setup: Setup) -> TableSpec:
    """The cells derived after stage 1, 2 and 3 of one search, each retrained, beside DARTS V2."""
    from ...evaluation.genotypes import DARTS_V2

    need = search_need(setup)
    darts = DARTS_V2.to_dict()

    def genotypes(store: StoreView) -> list[tuple[str, dict | None]]:
        row = store.search(need)
        stage_gs = [json.loads(g) for g in row["stage_genotypes"]] if row else [None] * len(setup.base["cells"])
        return [(f"stage {i + 1}", g) for i, g in enumerate(stage_gs)] + [("DARTS_V2", darts)]

    def evaluations(store: StoreView) -> list[EvalNeed]:
        return [EvalNeed(g, label) for label, g in genotypes(store) if g is not None]

    def build(store: StoreView) -> Rendered:
        rows, ours, published = [], [], []
        for i, (label, g) in enumerate(genotypes(store)):
            depth = str(setup.base["cells"][i]) if label != "DARTS_V2" else "8 (DARTS search)"
            p = paper.DEPTH_ERROR_PCT.get(label)
            err = error_pct(store, setup, g)
            skips = None if g is None else sum(op == "skip_connect" for op, _ in g["normal"])
            rows.append([label, depth, fmt(skips), published_text(p), fmt(err)])
            ours.append(err)
            published.append(published_value(p))
        extra = [f"Stage cells are refined to M = {setup.base['skip_connects']}, as the search writes them; "
                 f"every cell is retrained with {setup.eval_preset}."]
        return Rendered("depth", "Figure 3: cells of each search stage, retrained", notes(setup, extra),
                        ["cell", "search cells", "skip-connects", "paper error (%)", "our error (%)"], rows,
                        {"groups": [r[0] for r in rows], "series": {"paper": published, "ours": ours},
                         "ylabel": "test error (%)"})

    return TableSpec("depth", "cells of each search stage", "pdarts-ray reproduce depth --preset paper",
                     "Figure 3, section 4.4.1", [need], evaluations, build)
