"""Table 1: the P-DARTS row (test error, parameters, search cost).

Paper: CIFAR-10 2.50 % test error, 3.4 M parameters, 0.3 GPU-days; CIFAR-100 15.92 %,
3.6 M, 0.3 GPU-days.

    pdarts-ray reproduce table1 --preset paper
    pdarts-ray reproduce table1 --preset paper --dataset cifar100

Needs: the preset's search and one retraining of its final cell (shared with `depth`).
Renders: the paper's row beside ours: error, parameters of the paper's evaluation network
(C = 36, 20 cells) built from the cell, and the search's own stage seconds in days.
"""
from __future__ import annotations

import json

from .. import paper_numbers as paper
from .common import (PAPER_NETWORK, EvalNeed, Rendered, Setup, StoreView, TableSpec, error_pct, fmt, notes, params_m,
                     published_text, published_value, search_need)


def spec(setup: Setup) -> TableSpec:
    """The P-DARTS row of Table 1 for the cell found by the preset's own search."""
    need = search_need(setup)
    published = paper.TABLE1[setup.dataset]

    def genotype(store: StoreView) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        g = genotype(store)
        return [EvalNeed(g, "P-DARTS")] if g is not None else []

    def build(store: StoreView) -> Rendered:
        row = store.search(need)
        g = genotype(store)
        err = error_pct(store, setup, g)
        days = sum(row["stage_seconds"]) / 86400 if row and row["stage_seconds"] else None
        device = row["device"] if row else None
        unit = "GPU-days" if device and device.startswith("cuda") else "days"
        rows = [[f"P-DARTS ({setup.base['dataset']})", published_text(published["error_pct"]), fmt(err),
                 published_text(published["params_m"]), fmt(params_m(setup, g)),
                 published_text(published["search_gpu_days"]), fmt(days, 4)]]
        extra = [f"Our search cost: the search's stage seconds in {unit} on {device or 'no device yet'}; "
                 f"parameters of the paper's evaluation network ({PAPER_NETWORK}); error from retraining with "
                 f"{setup.eval_preset}. Paper row: {published['error_pct'].source}."]
        return Rendered("table1", "Table 1: P-DARTS", notes(setup, extra),
                        ["architecture", "paper error (%)", "our error (%)", "paper params (M)", "our params (M)",
                         "paper search cost (GPU-days)", f"our search cost ({unit})"], rows,
                        {"groups": ["test error (%)"], "series": {"paper": [published_value(published["error_pct"])],
                                                                  "ours": [err]},
                         "ylabel": "test error (%)"})

    return TableSpec("table1", "the P-DARTS row of Table 1", "pdarts-ray reproduce table1 --preset paper",
                     "Table 1", [need], evaluations, build)
