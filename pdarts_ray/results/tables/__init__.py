"""The paper's diagnostic tables, one module each (the paper's context, the exact
`pdarts-ray reproduce` command, what the table needs searched and retrained, and how it
renders); `common` holds what they share and `render` writes them out."""

from __future__ import annotations

from collections.abc import Callable

from ...core.errors import UserError
from . import approx, depth, dropout, refine, skip, table1, table3
from .common import Setup, TableSpec

TABLE_MODULES = {
    "table3": table3,
    "depth": depth,
    "approx": approx,
    "dropout": dropout,
    "skip": skip,
    "refine": refine,
    "table1": table1,
}
TABLES = tuple(TABLE_MODULES)
TABLE_CONFIGS: dict[str, Callable[[Setup], TableSpec]] = {name: m.spec for name, m in TABLE_MODULES.items()}


def table_spec(table: str, setup: Setup) -> TableSpec:
    if table not in TABLE_CONFIGS:
        raise UserError(f"unknown table {table!r} (choose from {', '.join(TABLES)})")
    return TABLE_CONFIGS[table](setup)
