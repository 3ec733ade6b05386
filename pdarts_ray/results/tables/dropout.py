"""Section 4.4.3: skip-connect dropout against none, each cell refined to M = 2, 3, 4.

Needs: two searches per seed (`--repeats`; skip dropout 0.0/0.0/0.0 and 0.0/0.3/0.6; the
second is shared with `skip` and `refine`) and a retraining of each at every M (one per
distinct cell). Renders: per setting and M the paper's error and ours and the skip-connects
before refinement; the effects: skip-connects accumulating stage by stage without dropout,
dropout holding them down, and the error at M = 2.

The paper's context and the commands: pdarts_ray/experiments/dropout.py.
"""

from __future__ import annotations

from .. import paper_numbers as paper
from .common import (
    DROPOUT,
    NO_DROPOUT,
    EvalNeed,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    error_pct,
    genotype_of_m,
    mean_or_none,
    notes,
    per_seed,
    published_text,
    published_value,
    rates,
    resolution,
    search_need,
    seeds_note,
    split_note,
    spread,
)
from .effects import Effect, differ, difference


def spec(setup: Setup) -> TableSpec:
    """Skip dropout 0.0/0.0/0.0 vs 0.0/0.3/0.6, each refined to M = 2, 3, 4 and retrained
    (a search per seed)."""
    stages = len(setup.base["cells"])
    seeds = setup.repeat_seeds()
    settings = [
        (label, [search_need(setup, skip_dropout=rates(values, stages), seed=s) for s in seeds])
        for label, values in (("0.0/0.0/0.0", NO_DROPOUT), ("0.0/0.3/0.6", DROPOUT))
    ]
    ms = (2, 3, 4)
    several = len(seeds) > 1

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = []
        for label, needs in settings:
            for need in needs:
                for m in ms:
                    g = genotype_of_m(store.search(need), m)
                    if g is not None:
                        out.append(EvalNeed(g, setup.label(need.config["seed"], f"dropout {label}, M={m}")))
        return out

    def skips_before(store: StoreView, needs) -> list[int | None]:
        return [
            None if (row := store.search(n)) is None else row["skip_connects_before_refinement"]
            for n in needs
        ]

    def stage_skips(store: StoreView, needs, stage: int) -> list[int | None]:
        """Skip-connects of the normal cell derived at the end of `stage` (0-based), before refinement."""
        out = []
        for need in needs:
            row = store.search(need)
            counts = row and row.get("stage_skip_connects_before_refinement")
            out.append(counts[stage] if counts else None)
        return out

    def build(store: StoreView) -> Rendered:
        rows, series, errors, skips = [], {}, {}, {}
        for label, needs in settings:
            skips[label] = skips_before(store, needs)
            errors[label] = {
                m: [error_pct(store, setup, genotype_of_m(store.search(n), m)) for n in needs] for m in ms
            }
            for m in ms:
                rows.append(
                    [
                        label,
                        str(m),
                        published_text(paper.DROPOUT_ERROR_PCT[label][m]),
                        spread(errors[label][m]),
                        published_text(paper.DROPOUT_SKIPS_BEFORE[label]),
                        spread(skips[label]),
                    ]
                    + ([per_seed(errors[label][m])] if several else [])
                )
            series[f"paper, dropout {label}"] = [
                published_value(paper.DROPOUT_ERROR_PCT[label][m]) for m in ms
            ]
            series[f"ours, dropout {label}"] = [mean_or_none(errors[label][m]) for m in ms]
        none = settings[0][1]
        per_stage = {
            label: " / ".join(spread(stage_skips(store, needs, s)) for s in range(stages))
            for label, needs in settings
        }
        extra = [
            (
                f"Initial skip dropout per stage as listed; the other keys as {setup.search_preset}; "
                f"retrained with {setup.eval_preset}."
            ),
            "Skip-connects of the normal cell at the end of each stage, before refinement: "
            + "; ".join(f"skip dropout {label}: {counts}" for label, counts in per_stage.items())
            + ".",
        ]
        extra += seeds_note(setup) + split_note(
            setup, [e for label, _ in settings for m in ms for e in errors[label][m]]
        )
        at_2 = {label: [genotype_of_m(store.search(n), 2) for n in needs] for label, needs in settings}
        effects = [
            Effect(
                "skip-connects before refinement without skip dropout, last stage - stage 1",
                "accumulate as the search deepens (section 3.2.2)",
                +1,
                difference(stage_skips(store, none, 0), stage_skips(store, none, stages - 1)),
            ),
            Effect(
                "skip-connects before refinement, without - with skip dropout",
                "8 - 4 = +4",
                +1,
                difference(skips["0.0/0.3/0.6"], skips["0.0/0.0/0.0"]),
                paper_effect=4.0,
                # dropout can only hold down skip-connects a search without it keeps
                acted=[s is None or s > 0 for s in skips["0.0/0.0/0.0"]],
            ),
            Effect(
                "error (%) at M = 2, without - with skip dropout",
                "2.93 - 2.69 = +0.24",
                +1,
                difference(errors["0.0/0.3/0.6"][2], errors["0.0/0.0/0.0"][2]),
                paper_effect=0.24,
                resolution=resolution(setup, errors["0.0/0.3/0.6"][2] + errors["0.0/0.0/0.0"][2]),
                acted=differ(at_2["0.0/0.3/0.6"], at_2["0.0/0.0/0.0"]),
            ),
        ]
        return Rendered(
            "dropout",
            "Section 4.4.3: skip dropout, refined to M = 2, 3, 4",
            notes(setup, extra),
            [
                "skip dropout",
                "M",
                "paper error (%)",
                "our error (%)",
                "paper skip-connects before refinement",
                "our skip-connects before refinement",
            ]
            + (["our error per seed (%)"] if several else []),
            rows,
            {"groups": [f"M = {m}" for m in ms], "series": series, "ylabel": "test error (%)"},
            effects=effects,
        )

    return TableSpec(
        "dropout",
        "skip dropout vs none",
        "pdarts-ray reproduce dropout --preset paper",
        "section 4.4.3",
        [n for _, needs in settings for n in needs],
        evaluations,
        build,
    )
