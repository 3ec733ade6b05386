"""Section 4.4.2: the approximated op space against random op spaces of the same size.

Needs: the preset's full search per seed (`--repeats`), and `--runs` searches of the final
stage alone (its depth, op count and dropout) on an op space drawn per edge from the seed;
a retraining of each final cell. The effect pairs the two sides by seed. Renders: the
approximated error beside the best random one and each random one.

The paper's context and the commands: pdarts_ray/experiments/approx.py.
"""

from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (
    EvalNeed,
    Rendered,
    SearchNeed,
    Setup,
    StoreView,
    TableSpec,
    error_pct,
    fmt,
    mean_or_none,
    notes,
    published_text,
    published_value,
    resolution,
    search_need,
    split_note,
    spread,
)
from .effects import Effect, difference


def spec(setup: Setup) -> TableSpec:
    """The final stage searched on the approximated op space vs on random op spaces of the same size."""
    mains = [search_need(setup, seed=s) for s in setup.repeat_seeds()]
    last = {k: setup.base[k][-1:] for k in ("cells", "ops_kept", "skip_dropout")}
    randoms = [search_need(setup, **last, seed=s) for s in setup.seeds()]

    def genotype(store: StoreView, need: SearchNeed) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = [(genotype(store, n), setup.label(n.config["seed"], "approximated")) for n in mains]
        out += [(genotype(store, n), f"random seed {n.config['seed']}") for n in randoms]
        return [EvalNeed(g, name) for g, name in out if g is not None]

    def build(store: StoreView) -> Rendered:
        approx_errs = [error_pct(store, setup, genotype(store, n)) for n in mains]
        random_errs = [error_pct(store, setup, genotype(store, n)) for n in randoms]
        best = None if any(e is None for e in random_errs) else min(random_errs)
        ops = str(setup.base["ops_kept"][-1])
        rows = [
            [
                "approximated (stages 1-3)",
                ops,
                published_text(paper.APPROX_ERROR_PCT["approximated"]),
                spread(approx_errs),
            ],
            [
                f"random, best of {len(randoms)}",
                ops,
                published_text(paper.APPROX_ERROR_PCT["random (best of 3)"]),
                fmt(best),
            ],
        ]
        if len(mains) > 1:
            rows += [
                [f"approximated, seed {n.config['seed']}", ops, "", fmt(e)]
                for n, e in zip(mains, approx_errs)
            ]
        rows += [[f"random, seed {n.config['seed']}", ops, "", fmt(e)] for n, e in zip(randoms, random_errs)]
        extra = [
            f"Random: one search stage of {last['cells'][0]} cells on {last['ops_kept'][0]} ops per edge "
            f"drawn at random (space seed = search seed), skip dropout {last['skip_dropout'][0]}; "
            f"final cells at M = {setup.base['skip_connects']}; retrained with {setup.eval_preset}."
        ]
        # a random space and the full search of the same seed make a pair
        by_seed = {n.config["seed"]: e for n, e in zip(randoms, random_errs)}
        paired = [
            (e, by_seed[n.config["seed"]]) for n, e in zip(mains, approx_errs) if n.config["seed"] in by_seed
        ]
        extra += split_note(setup, approx_errs + random_errs)
        effects = [
            Effect(
                "error (%), random op space - approximated, same seed",
                "3.43 (best of 3) - 2.58 = +0.85",
                +1,
                difference([a for a, _ in paired], [r for _, r in paired]),
                paper_effect=0.85,
                resolution=resolution(setup, [e for pair in paired for e in pair]),
            )
        ]
        return Rendered(
            "approx",
            "Section 4.4.2: approximated vs random op spaces",
            notes(setup, extra),
            ["op space", "ops per edge", "paper error (%)", "our error (%)"],
            rows,
            {
                "groups": ["approximated", f"random (best of {len(randoms)})"],
                "series": {
                    "paper": [
                        published_value(paper.APPROX_ERROR_PCT["approximated"]),
                        published_value(paper.APPROX_ERROR_PCT["random (best of 3)"]),
                    ],
                    "ours": [mean_or_none(approx_errs), best],
                },
                "ylabel": "test error (%)",
            },
            effects=effects,
        )

    return TableSpec(
        "approx",
        "approximated vs random op spaces",
        "pdarts-ray reproduce approx --preset paper",
        "section 4.4.2",
        [*mains, *randoms],
        evaluations,
        build,
    )
