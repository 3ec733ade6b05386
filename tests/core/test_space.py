"""Genotype data, parsing of the reference's text, and properties of the rules."""

import json
import random

import pytest

from pdarts_ray.core.space import (
    NONE,
    NUM_EDGES,
    PRIMITIVES,
    SKIP,
    CellState,
    Genotype,
    derive,
    derive_all_m,
    derive_cell,
    edge_input,
    prune_row,
    prune_switches,
)

PDARTS_TEXT = """PDARTS = Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),
('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)],
normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0),
('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)],
reduce_concat=range(2, 6))"""


def test_edge_inputs():
    assert [edge_input(e) for e in range(NUM_EDGES)] == [0, 1, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4]


def test_parse_reference_text_and_json_round_trip():
    g = Genotype.parse(PDARTS_TEXT)
    assert g.normal[0] == ("skip_connect", 0) and g.reduce[-1] == ("dil_conv_5x5", 3)
    assert g.normal_concat == (2, 3, 4, 5)
    assert g.skip_count() == 2
    again = Genotype.parse(json.dumps(g.to_dict()))
    assert again == g
    assert json.loads(json.dumps(g.to_dict())) == g.to_dict()


def test_parse_positional_and_list_concat():
    text = (
        "Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1)] * 1 + [('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]"
        " * 0, [2], [('max_pool_3x3', 0), ('max_pool_3x3', 1)], [2])"
    )
    with pytest.raises(ValueError, match="literal"):  # arithmetic is code, not data
        Genotype.parse(text)
    g = Genotype.parse(
        "Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [2], "
        "[('max_pool_3x3', 0), ('max_pool_3x3', 1)], [2])"
    )
    assert g.steps == 1 and g.normal_concat == (2,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("Genotype(normal=__import__('os').system('true'), reduce=[])", "literal"),
        ("print('hello')", "Genotype"),
        (
            '{"normal": [["conv_9x9", 0], ["skip_connect", 1]], "reduce": [["skip_connect", 0], ["skip_connect", 1]]}',  # noqa: E501
            "unknown op",
        ),
        (
            '{"normal": [["skip_connect", 2], ["skip_connect", 1]], "reduce": [["skip_connect", 0], ["skip_connect", 1]]}',  # noqa: E501
            "input 2",
        ),
        ('{"normal": [["skip_connect", 0]], "reduce": []}', "two genes per node"),
        ('{"normal": ', "invalid JSON"),
        (
            "Genotype(normal=[('none', 0), ('skip_connect', 1)], reduce=[('skip_connect', 0), ('skip_connect', 1)])",  # noqa: E501
            "unknown op 'none'",
        ),
    ],
)
def test_bad_genotypes_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        Genotype.parse(text)


def _random_state(rng, n_on):
    switches, alphas = [], []
    for _ in range(NUM_EDGES):
        on = sorted(rng.sample(range(8), n_on))
        switches.append([k in on for k in range(8)])
        alphas.append([rng.choice([rng.gauss(0, 1), 0.0, 1.0]) for _ in on])  # many exact ties
    return CellState(switches, alphas)


@pytest.mark.parametrize("seed", range(40))
def test_refinement_properties(seed):
    """Skips never exceed M; with more before, exactly M after; the reduce cell is untouched."""
    rng = random.Random(seed)
    normal, reduce = _random_state(rng, 3), _random_state(rng, 3)
    before = derive(normal, reduce)
    by_m = derive_all_m(normal, reduce)
    for m in range(9):
        g = by_m[str(m)]
        assert g.skip_count() == min(before.skip_count(), m)
        assert g.reduce == before.reduce
        assert g == derive(normal, reduce, m)
        if before.skip_count() <= m:
            assert g == before
    # genes: two per node, inputs ascending within a node
    for node in range(4):
        a, b = before.normal[2 * node][1], before.normal[2 * node + 1][1]
        assert a < b <= node + 1


def test_last_stage_prune_always_drops_none_first():
    row = [True, False, False, True, True, False, False, False]
    probs = [0.9, 0, 0, 0.05, 0.05, 0, 0, 0]
    assert prune_row(row, probs, 2, last_stage=True) == [False] * 4 + [True] + [False] * 3  # tie: higher kept
    assert prune_row(row, probs, 2, last_stage=False) == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
    ]


def test_prune_refuses_to_empty_an_edge():
    with pytest.raises(ValueError, match="cannot drop 3 of 3"):
        prune_row([True, True, True, False, False, False, False, False], [0.3, 0.3, 0.4] + [0] * 5, 3, False)


def test_none_mass_is_not_renormalised_away():
    # edge 2 carries a strong `none`: its best real op has a small absolute probability,
    # so edge 3 (weaker op, no none) wins node 1 even though edge 2's op dominates its own row.
    sw_none = [True, False, False, False, True, False, False, True]
    sw_plain = [False, False, False, True, True, False, False, True]
    switches = [sw_plain] * NUM_EDGES  # a fresh list: rows are replaced below
    alphas = [[0.0, 0.0, 0.0]] * NUM_EDGES
    switches[2], alphas[2] = sw_none, [5.0, 1.0, 0.0]  # P(sep3) ~ 0.018
    switches[3], alphas[3] = sw_plain, [0.0, 0.0, 0.0]  # every op 1/3
    switches[4], alphas[4] = sw_plain, [0.0, 0.0, -1.0]
    cell = CellState(switches, alphas)
    genes = derive_cell(cell)
    assert genes[2:4] == [("dil_conv_5x5", 1), ("sep_conv_3x3", 2)]  # edges 3 and 4, not 2 (ties: higher op)


def test_reduce_cell_is_never_refined():
    sw = [False, False, False, True, True, False, False, True]
    skips = CellState([sw] * NUM_EDGES, [[3.0, 0.0, 0.0]] * NUM_EDGES)
    g = derive(skips, skips, 0)
    assert g.skip_count() == 0
    assert all(op == "skip_connect" for op, _ in g.reduce)


def test_primitive_constants():
    assert PRIMITIVES[NONE] == "none" and PRIMITIVES[SKIP] == "skip_connect"
    assert (
        prune_switches([[True] * 8] * NUM_EDGES, [[0.0] * 8] * NUM_EDGES, 3, False)[0]
        == [False] * 3 + [True] * 5
    )
