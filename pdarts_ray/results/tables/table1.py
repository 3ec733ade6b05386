"""Table 1: the P-DARTS row (test error, parameters, search cost).

Needs: the preset's search per seed (`--repeats`) and a retraining of its final cell
(shared with `depth`).
Renders: the paper's row beside ours: error, parameters of the paper's evaluation network
(C = 36, 20 cells) built from the cell, and the search's own stage seconds in days.

The paper's context and the commands: pdarts_ray/experiments/table1.py.
"""

from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (
    PAPER_NETWORK,
    EvalNeed,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    error_pct,
    mean_or_none,
    notes,
    params_m,
    per_seed,
    published_text,
    published_value,
    search_need,
    seeds_note,
    split_note,
    spread,
)


def spec(setup: Setup) -> TableSpec:
    """The P-DARTS row of Table 1 for the cells found by the preset's own searches (one per seed)."""
    needs = [search_need(setup, seed=s) for s in setup.repeat_seeds()]
    published = paper.TABLE1[setup.dataset]

    def genotype(store: StoreView, need) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        return [
            EvalNeed(g, setup.label(n.config["seed"], "P-DARTS"))
            for n in needs
            if (g := genotype(store, n)) is not None
        ]

    def build(store: StoreView) -> Rendered:
        searches = [store.search(n) for n in needs]
        gs = [genotype(store, n) for n in needs]
        errs = [error_pct(store, setup, g) for g in gs]
        days = [
            sum(row["stage_seconds"]) / 86400 if row and row["stage_seconds"] else None for row in searches
        ]
        devices = sorted({row["device"] for row in searches if row and row["device"]})
        unit = "GPU-days" if devices and all(d.startswith("cuda") for d in devices) else "days"
        rows = [
            [
                f"P-DARTS ({setup.base['dataset']})",
                published_text(published["error_pct"]),
                spread(errs),
                published_text(published["params_m"]),
                spread([params_m(setup, g) for g in gs]),
                published_text(published["search_gpu_days"]),
                spread(days, 4),
            ]
            + ([per_seed(errs)] if len(needs) > 1 else [])
        ]
        extra = [
            f"Our search cost: the search's stage seconds in {unit} on "
            f"{', '.join(devices) or 'no device yet'}; "
            f"parameters of the paper's evaluation network ({PAPER_NETWORK}); error from retraining with "
            f"{setup.eval_preset}. Paper row: {published['error_pct'].source}."
        ]
        extra += seeds_note(setup) + split_note(setup, errs)
        return Rendered(
            "table1",
            "Table 1: P-DARTS",
            notes(setup, extra),
            [
                "architecture",
                "paper error (%)",
                "our error (%)",
                "paper params (M)",
                "our params (M)",
                "paper search cost (GPU-days)",
                f"our search cost ({unit})",
            ]
            + (["our error per seed (%)"] if len(needs) > 1 else []),
            rows,
            {
                "groups": ["test error (%)"],
                "series": {"paper": [published_value(published["error_pct"])], "ours": [mean_or_none(errs)]},
                "ylabel": "test error (%)",
            },
        )

    return TableSpec(
        "table1",
        "the P-DARTS row of Table 1",
        "pdarts-ray reproduce table1 --preset paper",
        "Table 1",
        needs,
        evaluations,
        build,
    )
