"""What running an experiment gives back to a script: a sweep's trial rows and a table."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results.tables.common import Rendered


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its experiment's path in the store and its trial rows."""

    name: str
    path: str
    trials: list[dict] = field(repr=False)
    m_values: list[int] | None = None  # the M values each trial is also refined to, if the sweep names any

    @classmethod
    def of(cls, summary: dict) -> SweepResult:
        """From the summary a sweep's driver returns."""
        return cls(summary["name"], summary["path"], summary["trials"], summary.get("m_values"))

    def table(self):
        """The trial rows as a pyarrow Table (`.to_pandas()` for pandas)."""
        from ..results.store import locate, read_trials

        return read_trials(locate(self.path))


@dataclass(frozen=True)
class ReproduceResult:
    """One of the paper's tables computed from the store, beside the paper's numbers."""

    table: str
    title: str
    columns: list[str]
    rows: list[list]
    notes: list[str]
    missing: list[str]
    experiment: str
    searches_started: int
    evaluations_started: int
    files: list[str]
    # the paper's effects as differences per seed (results.tables.effects: EFFECT_KEYS, then
    # TEST_KEYS): what, paper, mean ± standard error, seeds, per seed, verdict; then the
    # test's numbers: mean, standard error, 95% interval, p, the test, the paper's effect and
    # the smallest difference resolved
    effects: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, r: Rendered, experiment: str, searches: int, evaluations: int, files: list[str]):
        """From a rendered table, the store's experiment it was read from and the work started."""
        return cls(
            r.name,
            r.title,
            list(r.columns),
            [list(row) for row in r.rows],
            list(r.notes),
            list(r.missing),
            experiment,
            searches,
            evaluations,
            files,
            [e.record() for e in r.effects],
        )

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)
