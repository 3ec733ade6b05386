"""Section 4.4.3: one search refined to M = 0..4 skip-connects in the normal cell.

Paper: the cell of one search with skip dropout 0.0/0.3/0.6, refined to M = 0, 1, 2, 3, 4,
retrains to 2.78 / 2.68 / 2.69 / 2.84 / 2.97 % with 4.1 / 3.7 / 3.3 / 3.0 / 2.7 M
parameters: M = 2 is the paper's choice.

    pdarts-ray reproduce skip --preset paper

Needs: one search (shared with `dropout`) and a retraining per distinct refined cell.
Renders: per M the skip-connects kept, the paper's error and ours, and parameters of the
paper's evaluation network (C = 36, 20 cells) built from each cell.
"""
from __future__ import annotations

from .. import paper_numbers as paper
from .common import (DROPOUT, PAPER_NETWORK, EvalNeed, Rendered, Setup, StoreView, TableSpec, count_dataset, error_pct,
                     fmt, genotype_of_m, notes, params_m, published_text, published_value, rates, search_need)


def spec(setup: Setup) -> TableSpec:
    """One search (skip dropout 0.0/0.3/0.6) refined to M = 0..4, each retrained."""
    need = search_need(setup, skip_dropout=rates(DROPOUT, len(setup.base["cells"])))
    ms = (0, 1, 2, 3, 4)

    def evaluations(store: StoreView) -> list[EvalNeed]:
        row = store.search(need)
        return [EvalNeed(genotype_of_m(row, m), f"M={m}") for m in ms if row is not None]

    def build(store: StoreView) -> Rendered:
        row = store.search(need)
        rows, errs = [], []
        for m in ms:
            g = genotype_of_m(row, m)
            err = error_pct(store, setup, g)
            skips = None if g is None else sum(op == "skip_connect" for op, _ in g["normal"])
            params = params_m(setup, g)
            rows.append([str(m), fmt(skips), published_text(paper.SKIP_ERROR_PCT[m]), fmt(err),
                         published_text(paper.SKIP_PARAMS_M[m]), fmt(params)])
            errs.append(err)
        extra = [f"Parameters of the paper's evaluation network ({PAPER_NETWORK}, {count_dataset(setup)}) "
                 f"built from each cell; errors from retraining with {setup.eval_preset}."]
        return Rendered("skip", "Section 4.4.3: skip-connects kept (M) after refinement", notes(setup, extra),
                        ["M", "our skip-connects", "paper error (%)", "our error (%)", "paper params (M)",
                         "our params (M)"], rows,
                        {"groups": [f"M = {m}" for m in ms],
                         "series": {"paper": [published_value(paper.SKIP_ERROR_PCT[m]) for m in ms], "ours": errs},
                         "ylabel": "test error (%)"})

    return TableSpec("skip", "skip-connects kept", "pdarts-ray reproduce skip --preset paper", "section 4.4.3",
                     [need], evaluations, build)
