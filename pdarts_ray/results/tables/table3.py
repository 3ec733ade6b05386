"""Table 3 (section 4.4.2): peak memory of each search stage.

Needs: `--runs` searches of the preset's config (seeds counting up from the preset's);
no retraining. Renders: per run and stage the paper's GB beside ours (CUDA peak allocated,
and reserved, on a GPU; the process's peak resident set on a CPU); bars per stage.

The paper's context and the commands: pdarts_ray/experiments/table3.py.
"""

from __future__ import annotations

from .. import paper_numbers as paper
from .common import (
    GIB,
    Rendered,
    Setup,
    StoreView,
    TableSpec,
    fmt,
    notes,
    published_text,
    published_value,
    search_need,
)


def spec(setup: Setup) -> TableSpec:
    """Peak memory per search stage over `--runs` independent searches (seeds differ)."""
    needs = [search_need(setup, seed=s) for s in setup.seeds()]

    def build(store: StoreView) -> Rendered:
        rows_in = [store.search(n) for n in needs]
        stages = len(setup.base["cells"])
        kinds = {r["peak_memory_kind"] for r in rows_in if r}
        devices = sorted({r["device"] for r in rows_in if r and r["device"]})
        cuda = any(k and k.startswith("cuda") for k in kinds)
        columns = ["run", "seed"]
        for s in range(stages):
            columns += [f"stage {s + 1} paper", f"stage {s + 1} ours"]
        if cuda:
            columns += [f"stage {s + 1} ours reserved" for s in range(stages)]
        rows, series, our_series = [], {}, {}
        for i, (need, row) in enumerate(zip(needs, rows_in)):
            published = paper.TABLE3_MEMORY_GB[i] if i < len(paper.TABLE3_MEMORY_GB) else [None] * stages
            peaks = row["stage_peak_memory_bytes"] if row else [None] * stages
            ours = [b / GIB if b is not None else None for b in peaks]
            cells = [str(i + 1), str(need.config["seed"])]
            for s in range(stages):
                cells += [published_text(published[s]) if s < len(published) else "", fmt(ours[s])]
            if cuda:
                reserved = (row or {}).get("stage_peak_memory_reserved_bytes") or [None] * stages
                cells += [fmt(b / GIB if b is not None else None) for b in reserved]
            rows.append(cells)
            if i < len(paper.TABLE3_MEMORY_GB):
                series[f"paper run {i + 1}"] = [published_value(p) for p in published]
            our_series[f"ours run {i + 1}"] = ours
        series.update(our_series)
        what = (
            "CUDA peak allocated (and reserved) per stage"
            if cuda
            else "peak resident memory of the search process per stage"
            if kinds == {"cpu_peak_rss"}
            else "peak memory per stage"
        )
        extra = [
            f"Memory in GB (2^30 bytes): {what}, on {', '.join(devices) or 'no device yet'}, "
            f"batch {setup.base['batch_size']}. Paper: GPU memory at batch 96 on a 16 GB P100."
        ]
        return Rendered(
            "table3",
            "Table 3: peak memory per search stage",
            notes(setup, extra),
            columns,
            rows,
            {
                "groups": [f"stage {s + 1}" for s in range(stages)],
                "series": series,
                "ylabel": "peak memory (GB)",
            },
        )

    return TableSpec(
        "table3",
        "peak memory per search stage",
        "pdarts-ray reproduce table3 --preset paper",
        "Table 3",
        needs,
        lambda store: [],
        build,
    )
