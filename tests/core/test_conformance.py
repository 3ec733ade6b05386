"""Conformance: every case of every fixture file goes through derive / prune and must
match exactly. PDARTS_FIXTURES_DIR points the test at another directory of files in
the same format (genotype cases have `expected.genotype`, switch cases
`expected.switches_normal`)."""

import json
import os
from pathlib import Path

import pytest
from helpers.paths import FIXTURES

from pdarts_ray.core.space import PRIMITIVES, CellState, derive, derive_cell, prune_switches

FIXTURES = Path(os.environ.get("PDARTS_FIXTURES_DIR") or FIXTURES)


def _cases(kind):
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "cases" not in data:
            continue
        assert data.get("primitives", list(PRIMITIVES)) == list(PRIMITIVES), path
        for case in data["cases"]:
            expected = case.get("expected", {})
            if kind == "genotype" and "genotype" in expected:
                out.append(pytest.param(case, id=f"{path.stem}-{case['id']}"))
            if kind == "switch" and "switches_normal" in expected:
                out.append(pytest.param(case, id=f"{path.stem}-{case['id']}"))
    return out


def _genes(gs):
    return [[op, j] for op, j in gs]


def _state(case):
    return CellState.from_dict(case["normal"], "normal"), CellState.from_dict(case["reduce"], "reduce")


def test_fixture_directory_has_both_kinds():
    assert _cases("genotype") and _cases("switch"), f"no fixture cases found in {FIXTURES}"


@pytest.mark.parametrize("case", _cases("genotype"))
def test_genotype_case(case):
    normal, reduce = _state(case)
    exp = case["expected"]
    got = derive(normal, reduce, case["M"]).to_dict()
    assert got == {
        **exp["genotype"],
        "normal": _genes(exp["genotype"]["normal"]),
        "reduce": _genes(exp["genotype"]["reduce"]),
    }
    if "genotype_before_restriction" in exp:
        before = derive(normal, reduce)
        assert before.to_dict()["normal"] == _genes(exp["genotype_before_restriction"]["normal"])
        assert before.to_dict()["reduce"] == _genes(exp["genotype_before_restriction"]["reduce"])
        assert before.skip_count() == exp["num_skip_normal_before_restriction"]
    if "num_skip_normal" in exp:
        assert derive(normal, reduce, case["M"]).skip_count() == exp["num_skip_normal"]
    for m, genes in exp.get("genotype_normal_by_M", {}).items():
        assert _genes(derive_cell(normal, int(m))) == _genes(genes), f"M={m}"
    for name, state in (("normal", normal), ("reduce", reduce)):
        key = f"stage3_drop_switches_{name}"
        if key in exp:
            drop = sum(state.switches[0]) - 1
            assert prune_switches(state.switches, state.alphas, drop, last_stage=True) == exp[key]


@pytest.mark.parametrize("case", _cases("switch"))
def test_switch_case(case):
    normal, reduce = _state(case)
    for name, state in (("normal", normal), ("reduce", reduce)):
        got = prune_switches(state.switches, state.alphas, case["num_to_drop"], case["is_last_stage"])
        assert got == case["expected"][f"switches_{name}"], name
