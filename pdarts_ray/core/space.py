"""The P-DARTS search space and the rules that turn alphas into decisions.

A cell has 4 intermediate nodes; node i takes one edge from every earlier state
j = 0 .. i+1 (0 = c_{k-2}, 1 = c_{k-1}, 2+n = node n), so edge e = OFFSETS[i] + j
and there are 14 edges. A *switch mask* is 14 rows of 8 booleans (one per primitive,
in PRIMITIVES order) saying which ops an edge still carries. *Alphas* of a cell type
are 14 rows with one raw value per switched-on op, in ascending primitive index.

Tie rules follow the reference implementation, which are the opposite of DARTS':
pruning drops the lower primitive index first, op choice keeps the higher primitive
index, edge choice keeps the higher edge index, and skip refinement deletes the
lowest-index skip first. Probabilities are float32 softmaxes, as in the reference.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NONE = PRIMITIVES.index("none")
SKIP = PRIMITIVES.index("skip_connect")
NUM_OPS = len(PRIMITIVES)
STEPS = 4
NODE_OFFSETS: tuple[int, ...] = (0, 2, 5, 9)
NUM_EDGES = 14
CONCAT: tuple[int, ...] = (2, 3, 4, 5)
MAX_SKIP_CONNECTS = 2 * STEPS
# bounds on what a genotype file may describe, checked before anything is built from it:
# far beyond any published cell, far below what could exhaust memory
MAX_GENOTYPE_STEPS = 32
MAX_GENOTYPE_TEXT = 1 << 20  # bytes of a genotype file

Switches = list[list[bool]]
Probs = list[list[float]]  # 14 x 8, 0.0 where an op is switched off


def edge_input(edge: int) -> int:
    """The input state index j of an edge."""
    for node in reversed(range(STEPS)):
        if edge >= NODE_OFFSETS[node]:
            return edge - NODE_OFFSETS[node]
    raise ValueError(f"edge {edge} out of range")


def node_edges(node: int) -> range:
    return range(NODE_OFFSETS[node], NODE_OFFSETS[node] + 2 + node)


# ---------------------------------------------------------------- switch masks


def full_switches() -> Switches:
    return [[True] * NUM_OPS for _ in range(NUM_EDGES)]


def ops_on(row: Sequence[bool]) -> list[int]:
    return [k for k, on in enumerate(row) if on]


def check_switches(switches, what: str = "switches") -> Switches:
    """Validate a 14x8 boolean mask with the same number of ops on every edge."""
    if not isinstance(switches, (list, tuple)) or len(switches) != NUM_EDGES:
        raise ValueError(f"{what}: expected {NUM_EDGES} rows")
    rows = []
    for e, row in enumerate(switches):
        if (
            not isinstance(row, (list, tuple))
            or len(row) != NUM_OPS
            or not all(isinstance(v, bool) for v in row)
        ):
            raise ValueError(f"{what}: row {e} must be {NUM_OPS} booleans")
        rows.append(list(row))
    counts = {sum(r) for r in rows}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{what}: every edge must have the same, non-zero number of ops on")
    return rows


def check_alphas(alphas, switches: Switches, what: str = "alphas") -> list[list[float]]:
    if not isinstance(alphas, (list, tuple)) or len(alphas) != NUM_EDGES:
        raise ValueError(f"{what}: expected {NUM_EDGES} rows")
    rows = []
    for e, (row, sw) in enumerate(zip(alphas, switches)):
        n_on = sum(sw)
        if not isinstance(row, (list, tuple)) or len(row) != n_on:
            raise ValueError(f"{what}: row {e} must have {n_on} values (one per op switched on)")
        try:
            rows.append([float(v) for v in row])
        except (TypeError, ValueError):
            raise ValueError(f"{what}: row {e} must be numbers") from None
    return rows


def probabilities(switches: Switches, alphas: Sequence[Sequence[float]]) -> Probs:
    """Float32 softmax of each edge's alpha row, spread out to the 8 primitive columns."""
    import torch  # here: genotypes and skip counts are read where torch is not loaded (the CLI's help)

    probs = []
    for sw, row in zip(switches, alphas):
        soft = torch.softmax(torch.tensor(row, dtype=torch.float32), dim=-1).tolist()
        full = [0.0] * NUM_OPS
        for k, p in zip(ops_on(sw), soft):
            full[k] = p
        probs.append(full)
    return probs


# ---------------------------------------------------------------- op pruning


def prune_row(row: Sequence[bool], probs: Sequence[float], drop: int, last_stage: bool) -> list[bool]:
    """Switch off `drop` ops of one edge, lowest probability first (ties: lower index).

    In the last stage `none` goes first, whatever its probability, and counts as a drop.
    """
    on = ops_on(row)
    if not 0 <= drop < len(on):
        raise ValueError(f"cannot drop {drop} of {len(on)} ops on an edge")
    dropped: list[int] = []
    if last_stage and NONE in on:
        dropped.append(NONE)
        on.remove(NONE)
    dropped += sorted(on, key=lambda k: (probs[k], k))[: drop - len(dropped)]
    out = list(row)
    for k in dropped:
        out[k] = False
    return out


def prune_switches(switches: Switches, alphas, drop: int, last_stage: bool) -> Switches:
    probs = probabilities(switches, alphas)
    return [prune_row(sw, p, drop, last_stage) for sw, p in zip(switches, probs)]


# ---------------------------------------------------------------- derivation


def _without_none(switches: Switches, probs: Probs) -> Probs:
    """P with `none` zeroed where it is on: it still took softmax mass (no renormalising)."""
    return [[0.0 if k == NONE else p for k, p in enumerate(row)] for row in probs]


def pick_ops(switches: Switches, probs: Probs) -> list[int]:
    """Best non-`none` op per edge (ties: higher primitive index)."""
    picked = []
    for e, (sw, row) in enumerate(zip(switches, probs)):
        candidates = [k for k in ops_on(sw) if k != NONE]
        if not candidates:
            raise ValueError(f"edge {e} has no op other than none")
        picked.append(max(candidates, key=lambda k: (row[k], k)))
    return picked


def pick_edges(switches: Switches, probs: Probs) -> list[int]:
    """Two incoming edges per node (node 0 keeps both); strongest first, ties: higher edge."""
    strength = [max(row[k] for k in ops_on(sw)) for sw, row in zip(switches, probs)]
    kept = list(node_edges(0))
    for node in range(1, STEPS):
        ranked = sorted(node_edges(node), key=lambda e: (strength[e], e))
        kept += ranked[-2:]
    return sorted(kept)


def _genes(ops: list[int], kept: list[int]) -> list[tuple[str, int]]:
    return [(PRIMITIVES[ops[e]], edge_input(e)) for e in kept]  # kept is ascending


def _refine(switches: Switches, probs: Probs, ops: list[int], kept: list[int], max_skips: int):
    """Delete the weakest kept skip-connect until at most `max_skips` remain.

    Each round zeroes one skip probability for good, re-picks every edge's op and
    re-selects every node's edges, so a skip can move to another edge before it goes.
    """
    probs = [list(row) for row in probs]

    def kept_skips():
        return [e for e in kept if ops[e] == SKIP]

    while len(kept_skips()) > max_skips:
        removable = [e for e in kept_skips() if probs[e][SKIP] > 0.0]
        if not removable:  # only reachable when an edge has no other positive op
            break
        weakest = min(removable, key=lambda e: (probs[e][SKIP], e))
        probs[weakest][SKIP] = 0.0
        ops = pick_ops(switches, probs)
        kept = pick_edges(switches, probs)
    return ops, kept


@dataclass(frozen=True)
class CellState:
    """One cell type at the end of a stage: its switch mask and raw alphas."""

    switches: Switches
    alphas: list[list[float]]

    @classmethod
    def from_dict(cls, data, what: str) -> CellState:
        if not isinstance(data, dict):
            raise ValueError(f"{what}: expected an object with 'switches' and 'alphas'")
        for key in ("switches", "alphas"):
            if key not in data:
                raise ValueError(f"{what}: missing '{key}'")
        switches = check_switches(data["switches"], f"{what}.switches")
        return cls(switches, check_alphas(data["alphas"], switches, f"{what}.alphas"))

    def to_dict(self) -> dict:
        return {"switches": self.switches, "alphas": self.alphas}


def derive_cell(state: CellState, max_skips: int | None = None) -> list[tuple[str, int]]:
    probs = _without_none(state.switches, probabilities(state.switches, state.alphas))
    ops = pick_ops(state.switches, probs)
    kept = pick_edges(state.switches, probs)
    if max_skips is not None:
        ops, kept = _refine(state.switches, probs, ops, kept, max_skips)
    return _genes(ops, kept)


def derive(normal: CellState, reduce: CellState, skip_connects: int | None = None) -> Genotype:
    """The genotype of a stage; with `skip_connects`, the normal cell is refined to at most M skips."""
    return Genotype(
        normal=tuple(derive_cell(normal, skip_connects)),
        reduce=tuple(derive_cell(reduce)),
    )


def derive_all_m(normal: CellState, reduce: CellState) -> dict[str, Genotype]:
    """One genotype per M = 0..8: M is a post-processing choice, one search serves all."""
    reduce_genes = tuple(derive_cell(reduce))
    return {
        str(m): Genotype(normal=tuple(derive_cell(normal, m)), reduce=reduce_genes)
        for m in range(MAX_SKIP_CONNECTS + 1)
    }


# ---------------------------------------------------------------- genotype


def skip_weight(state: CellState) -> float | None:
    """Mean softmax weight of skip_connect over the edges where it is still a candidate (the
    alphas' own measure of how far a cell leans to skip-connects); None where no edge has it."""
    probs = probabilities(state.switches, state.alphas)
    held = [row[SKIP] for sw, row in zip(state.switches, probs) if sw[SKIP]]
    return sum(held) / len(held) if held else None


def skip_count(genotype: Genotype | dict | None) -> int | None:
    """Skip-connects in a genotype's normal cell (the number M limits); None for no genotype.
    A genotype or its JSON form (`to_dict`)."""
    if genotype is None:
        return None
    normal = genotype.normal if isinstance(genotype, Genotype) else genotype["normal"]
    return sum(op == "skip_connect" for op, _ in normal)


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair: per node, two (op, input) genes, ascending input index."""

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...] = field(default=CONCAT)
    reduce_concat: tuple[int, ...] = field(default=CONCAT)

    def __post_init__(self):
        for name in ("normal", "reduce"):
            genes = tuple((str(op), int(j)) for op, j in getattr(self, name))
            object.__setattr__(self, name, genes)
            concat = tuple(int(i) for i in getattr(self, f"{name}_concat"))
            object.__setattr__(self, f"{name}_concat", concat)
        self._validate()

    def _validate(self):
        from .ops import OPS  # the registry may hold ops beyond the 8 search primitives

        for name in ("normal", "reduce"):
            genes = getattr(self, name)
            if not genes or len(genes) % 2:
                raise ValueError(f"genotype {name}: expected two genes per node, got {len(genes)} genes")
            steps = len(genes) // 2
            for g, (op, j) in enumerate(genes):
                if op not in OPS or op == "none":
                    raise ValueError(f"genotype {name}: unknown op '{op}'")
                if not 0 <= j < 2 + g // 2:
                    raise ValueError(
                        f"genotype {name}: gene {g} ({op}) has input {j}, node {g // 2} takes 0..{g // 2 + 1}"
                    )
            concat = getattr(self, f"{name}_concat")
            if not concat or any(not 0 <= i < 2 + steps for i in concat):
                raise ValueError(f"genotype {name}_concat: indices must lie in 0..{steps + 1}")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def skip_count(self) -> int:
        return skip_count(self)

    def to_dict(self) -> dict:
        return {
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data) -> Genotype:
        if not isinstance(data, dict) or "normal" not in data or "reduce" not in data:
            raise ValueError("genotype: expected an object with 'normal' and 'reduce'")

        def genes(name):
            value = data[name]
            if isinstance(value, (list, tuple)) and len(value) > 2 * MAX_GENOTYPE_STEPS:
                raise ValueError(f"genotype {name}: {len(value)} genes; at most {2 * MAX_GENOTYPE_STEPS}")
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(g, (list, tuple))
                and len(g) == 2
                and isinstance(g[0], str)
                and isinstance(g[1], int)
                and not isinstance(g[1], bool)
                for g in value
            ):
                raise ValueError(f"genotype {name}: expected a list of [op, input] pairs")
            return tuple((g[0], g[1]) for g in value)

        def concat(name):
            value = data.get(name, list(CONCAT))
            if isinstance(value, (list, tuple)) and len(value) > MAX_GENOTYPE_STEPS + 2:
                raise ValueError(f"genotype {name}: {len(value)} entries; at most {MAX_GENOTYPE_STEPS + 2}")
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in value
            ):
                raise ValueError(f"genotype {name}: expected a list of node indices")
            return tuple(value)

        return cls(genes("normal"), genes("reduce"), concat("normal_concat"), concat("reduce_concat"))

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """A genotype from JSON or from the reference's `Genotype(normal=[...], ...)` text.

        The reference text is parsed as a Python expression tree and only literals
        (and `range(a, b)` for the concat) are accepted: nothing is ever evaluated.
        """
        if len(text) > MAX_GENOTYPE_TEXT:
            raise ValueError(f"genotype: {len(text)} characters; a genotype takes far fewer")
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                return cls.from_dict(json.loads(stripped))
            except json.JSONDecodeError as err:
                raise ValueError(f"genotype: invalid JSON ({err.msg} at line {err.lineno})") from None
        return cls.from_dict(_parse_reference_text(stripped))


def _parse_reference_text(text: str) -> dict:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        raise ValueError("genotype: neither JSON nor a Genotype(...) expression") from None
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Genotype"
    ]
    if len(calls) != 1:
        raise ValueError("genotype: expected exactly one Genotype(...) expression")
    call = calls[0]
    names = ["normal", "normal_concat", "reduce", "reduce_concat"]
    if len(call.args) > len(names):
        raise ValueError("genotype: Genotype(...) takes at most 4 fields")
    values = dict(zip(names, call.args))
    for kw in call.keywords:
        if kw.arg not in names or kw.arg in values:
            raise ValueError(f"genotype: unexpected field '{kw.arg}' in Genotype(...)")
        values[kw.arg] = kw.value
    out = {}
    for name, node in values.items():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and not node.keywords
            and 1 <= len(node.args) <= 3
        ):
            args = [_literal(a, name) for a in node.args]
            if not all(
                isinstance(a, int) and not isinstance(a, bool) and abs(a) <= 2 * MAX_GENOTYPE_STEPS
                for a in args
            ):
                raise ValueError(f"genotype: field '{name}': range arguments must be small integers")
            out[name] = list(range(*args))
        else:
            value = _literal(node, name)
            if name in ("normal", "reduce") and isinstance(value, (list, tuple)):
                value = [list(g) if isinstance(g, tuple) else g for g in value]
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _literal(node, name):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"genotype: field '{name}' must be a literal") from None
