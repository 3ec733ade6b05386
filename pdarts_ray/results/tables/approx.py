"""Section 4.4.2: the approximated op space against random op spaces of the same size.

Paper: the final stage searched on the op space stages 1-2 chose (3 ops per edge) gives
2.58 % test error; the best of three searches on op spaces drawn at random per edge
gives 3.43 %: the earlier stages choose well.

    pdarts-ray reproduce approx --preset paper

Needs: the preset's full search, and `--runs` searches of the final stage alone (its depth,
op count and dropout) on an op space drawn per edge from the seed; five retrainings in
all. Renders: the approximated error beside the best random one and each random one.
"""
from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (EvalNeed, Rendered, SearchNeed, Setup, StoreView, TableSpec, error_pct, fmt, notes, published_text,
                     published_value, search_need)


def spec(setup: Setup) -> TableSpec:
    """The final stage searched on the approximated op space vs on random op spaces of the same size."""
    main = search_need(setup)
    last = {k: setup.base[k][-1:] for k in ("cells", "ops_kept", "skip_dropout")}
    randoms = [search_need(setup, **last, seed=s) for s in setup.seeds()]

    def genotype(store: StoreView, need: SearchNeed) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = [(genotype(store, main), "approximated")]
        out += [(genotype(store, n), f"random seed {n.config['seed']}") for n in randoms]
        return [EvalNeed(g, name) for g, name in out if g is not None]

    def build(store: StoreView) -> Rendered:
        approx_err = error_pct(store, setup, genotype(store, main))
        random_errs = [error_pct(store, setup, genotype(store, n)) for n in randoms]
        best = None if any(e is None for e in random_errs) else min(random_errs)
        rows = [["approximated (stages 1-3)", str(setup.base["ops_kept"][-1]),
                 published_text(paper.APPROX_ERROR_PCT["approximated"]), fmt(approx_err)],
                [f"random, best of {len(randoms)}", str(setup.base["ops_kept"][-1]),
                 published_text(paper.APPROX_ERROR_PCT["random (best of 3)"]), fmt(best)]]
        rows += [[f"random, seed {n.config['seed']}", str(setup.base["ops_kept"][-1]), "", fmt(e)]
                 for n, e in zip(randoms, random_errs)]
        extra = [f"Random: one search stage of {last['cells'][0]} cells on {last['ops_kept'][0]} ops per edge "
                 f"drawn at random (space seed = search seed), skip dropout {last['skip_dropout'][0]}; "
                 f"final cells at M = {setup.base['skip_connects']}; retrained with {setup.eval_preset}."]
        return Rendered("approx", "Section 4.4.2: approximated vs random op spaces", notes(setup, extra),
                        ["op space", "ops per edge", "paper error (%)", "our error (%)"], rows,
                        {"groups": ["approximated", f"random (best of {len(randoms)})"],
                         "series": {"paper": [published_value(paper.APPROX_ERROR_PCT["approximated"]),
                                     published_value(paper.APPROX_ERROR_PCT["random (best of 3)"])],
                                    "ours": [approx_err, best]},
                         "ylabel": "test error (%)"})

    return TableSpec("approx", "approximated vs random op spaces", "pdarts-ray reproduce approx --preset paper",
                     "section 4.4.2", [main, *randoms], evaluations, build)
