"""Section 4.4.3: several searches before and after architecture refinement to M = 2.

Needs: `--runs` searches with skip dropout 0.0/0.3/0.6 (seeds counting up; the first is
shared with `skip`) and two retrainings of each. Renders: per search the skip-connects and
errors before and after, then the mean and standard deviation (n - 1) of each; the effects:
genes refinement changes and the error it saves.

The paper's context and the commands: pdarts_ray/experiments/refine.py.
"""

from __future__ import annotations

from .. import paper_numbers as paper
from .common import (
    DROPOUT,
    EvalNeed,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    error_pct,
    fmt,
    genes_changed,
    genotype_of_m,
    mean_std,
    notes,
    published_text,
    rates,
    resolution,
    search_need,
    skip_count,
    split_note,
)
from .effects import Effect, difference


def spec(setup: Setup) -> TableSpec:
    """`--runs` searches with skip dropout 0.0/0.3/0.6, retrained before refinement and at M = 2."""
    needs = [
        search_need(setup, skip_dropout=rates(DROPOUT, len(setup.base["cells"])), seed=s)
        for s in setup.seeds()
    ]
    phases = (("before", 8), ("after", 2))

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = []
        for need in needs:
            row = store.search(need)
            if row is not None:
                out += [
                    EvalNeed(genotype_of_m(row, m), f"seed {need.config['seed']}, {label}")
                    for label, m in phases
                ]
        return out

    def build(store: StoreView) -> Rendered:
        errs = {label: [] for label, _ in phases}
        rows = []
        for i, need in enumerate(needs):
            row = store.search(need)
            cells = [f"run {i + 1} (seed {need.config['seed']})"]
            for label, m in phases:
                g = genotype_of_m(row, m)
                err = error_pct(store, setup, g)
                errs[label].append(err)
                skips = skip_count(g)
                published = paper.REFINE_SKIPS[label]
                cells += [
                    published_text(published[i]) if i < len(published) else "",
                    fmt(skips),
                    "",
                    fmt(err),
                ]
            rows.append(cells)
        summary = ["mean ± std"]
        means = {}
        for label, _ in phases:
            mean, std = mean_std(errs[label])
            means[label] = mean
            p_mean, p_std = paper.REFINE_ERROR_PCT[label]
            summary += [
                "",
                "",
                f"{p_mean.text} ± {p_std.text}",
                "-" if mean is None else f"{mean:.2f} ± {std:.2f}",
            ]
        rows.append(summary)
        before = [genotype_of_m(store.search(n), 8) for n in needs]
        changed = [genes_changed(b, genotype_of_m(store.search(n), 2)) for b, n in zip(before, needs)]
        # refinement acts on a cell with more than M = 2 skip-connects
        acted = [g is None or skip_count(g) > 2 for g in before]
        effects = [
            Effect(
                "normal-cell genes changed by refinement to M = 2 (of 8)",
                "cells with 3 and 4 skip-connects change (section 4.4.3)",
                +1,
                changed,
                acted=acted,
            ),
            Effect(
                "error (%), before - after refinement",
                "2.79 - 2.65 = +0.14",
                +1,
                difference(errs["after"], errs["before"]),
                paper_effect=0.14,
                resolution=resolution(setup, errs["before"] + errs["after"]),
                acted=acted,
            ),
        ]
        extra = [
            "Before refinement: the cell derived with no limit on skip-connects (M = 8); after: M = 2. "
            f"Standard deviation over the {len(needs)} searches (n - 1); retrained with {setup.eval_preset}."
        ] + split_note(setup, errs["before"] + errs["after"])
        return Rendered(
            "refine",
            "Section 4.4.3: before and after architecture refinement",
            notes(setup, extra),
            [
                "search",
                "paper skip-connects before",
                "our skip-connects before",
                "paper error before (%)",
                "our error before (%)",
                "paper skip-connects after",
                "our skip-connects after",
                "paper error after (%)",
                "our error after (%)",
            ],
            rows,
            {
                "groups": ["before refinement", "after (M = 2)"],
                "series": {
                    "paper": [paper.REFINE_ERROR_PCT[label][0].value for label, _ in phases],
                    "ours": [means[label] for label, _ in phases],
                },
                "ylabel": "mean test error (%)",
            },
            effects=effects,
        )

    return TableSpec(
        "refine",
        "before and after refinement",
        "pdarts-ray reproduce refine --preset paper",
        "section 4.4.3",
        needs,
        evaluations,
        build,
    )
