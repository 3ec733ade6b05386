"""Section 4.4.3: skip-connect dropout against none, each cell refined to M = 2, 3, 4.

Paper: without skip dropout the normal cell keeps 8 skip-connects before refinement and
retrains to 2.93 / 3.28 / 3.51 % at M = 2 / 3 / 4; with dropout 0.0/0.3/0.6 it keeps 4 and
retrains to 2.69 / 2.84 / 2.97 %: dropout holds skip-connects down and the cells are better.

    pdarts-ray reproduce dropout --preset paper

Needs: two searches (skip dropout 0.0/0.0/0.0 and 0.0/0.3/0.6; the second is shared with
`skip` and `refine`) and a retraining of each at every M (one per distinct cell). Renders:
per setting and M the paper's error and ours and the skip-connects before refinement.
"""
from __future__ import annotations

from .. import paper_numbers as paper
from .common import (DROPOUT, NO_DROPOUT, EvalNeed, Rendered, Setup, StoreView, TableSpec, error_pct, fmt,
                     genotype_of_m, notes, published_text, published_value, rates, search_need)


def spec(setup: Setup) -> TableSpec:
    """Skip dropout 0.0/0.0/0.0 vs 0.0/0.3/0.6, each refined to M = 2, 3, 4 and retrained."""
    stages = len(setup.base["cells"])
    settings = [("0.0/0.0/0.0", search_need(setup, skip_dropout=rates(NO_DROPOUT, stages))),
                ("0.0/0.3/0.6", search_need(setup, skip_dropout=rates(DROPOUT, stages)))]
    ms = (2, 3, 4)

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = []
        for label, need in settings:
            for m in ms:
                g = genotype_of_m(store.search(need), m)
                if g is not None:
                    out.append(EvalNeed(g, f"dropout {label}, M={m}"))
        return out

    def build(store: StoreView) -> Rendered:
        rows, series = [], {}
        for label, need in settings:
            row = store.search(need)
            skips = None if row is None else row["skip_connects_before_refinement"]
            errs = [error_pct(store, setup, genotype_of_m(row, m)) for m in ms]
            for m, err in zip(ms, errs):
                rows.append([label, str(m), published_text(paper.DROPOUT_ERROR_PCT[label][m]), fmt(err),
                             published_text(paper.DROPOUT_SKIPS_BEFORE[label]), fmt(skips)])
            series[f"paper, dropout {label}"] = [published_value(paper.DROPOUT_ERROR_PCT[label][m]) for m in ms]
            series[f"ours, dropout {label}"] = errs
        extra = [f"Initial skip dropout per stage as listed; the other keys as {setup.search_preset}; "
                 f"retrained with {setup.eval_preset}."]
        return Rendered("dropout", "Section 4.4.3: skip dropout, refined to M = 2, 3, 4", notes(setup, extra),
                        ["skip dropout", "M", "paper error (%)", "our error (%)",
                         "paper skip-connects before refinement", "our skip-connects before refinement"], rows,
                        {"groups": [f"M = {m}" for m in ms], "series": series, "ylabel": "test error (%)"})

    return TableSpec("dropout", "skip dropout vs none", "pdarts-ray reproduce dropout --preset paper",
                     "section 4.4.3", [n for _, n in settings], evaluations, build)
