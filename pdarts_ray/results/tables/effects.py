"""The paper's effects as paired differences across seeds, each judged by a test.

An effect is one difference per seed whose two sides come from searches of the same seed
(a paired design). Its p-value is that of an exact paired permutation test, two-sided: the
mean difference against the means of every one of the 2^n ways of flipping the signs of
the differences (sampled, 2^16 of them, beyond 16 seeds). It needs no normal errors, and it
stays honest for the small, discrete differences these tables hold (genes, skip-connects,
whole test images), where a t-test divides by a spread that can be zero. Its smallest
two-sided p-value is 2 / 2^n: 0.25 with 3 seeds, 0.0625 with 5, 0.03125 with 6, so an
effect can be shown from 6 seeds on. The interval is Student's t at n - 1 degrees of freedom.

Verdicts, in this order:
- untested: fewer than 2 seeds;
- missing: a side of some seed is not in the store yet;
- not applicable: the mechanism never acted (no seed's cell changed, nothing to remove);
- not resolvable: the smallest difference the test split resolves (one binomial standard
  error of the error rate measured, at least one image) exceeds the paper's effect;
- shown: p < 0.05 with the mean in the paper's direction; opposite: p < 0.05 against it;
- not shown: otherwise.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
MIN_SEEDS = 2
EXACT_UP_TO = 16  # seeds; beyond, the sign flips are sampled
SAMPLED_FLIPS = 2**16

# today's keys of an effect in the API and --json output, then the test's
EFFECT_KEYS = ("effect", "paper", "ours", "seeds", "per_seed", "verdict")
TEST_KEYS = ("mean", "standard_error", "interval_95", "p", "test", "paper_effect", "resolution")
EFFECT_COLUMNS = [
    "effect",
    "paper",
    "ours: mean ± standard error",
    "95% interval",
    "seeds",
    "p",
    "per seed",
    "verdict",
]
TEST_NAME = "exact paired permutation (sign flips), two-sided"


def permutation_p(differences: list[float]) -> float:
    """Two-sided p of the mean paired difference: the share of sign flips whose |mean| is at
    least the observed one (exact up to EXACT_UP_TO pairs, else sampled with a fixed seed)."""
    return _permutation_p(tuple(float(v) for v in differences))


@functools.lru_cache(maxsize=256)  # a table asks each effect's p for its cells, record and verdict
def _permutation_p(differences: tuple[float, ...]) -> float:
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        raise ValueError("no differences")
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        rng = np.random.default_rng(20191027)
        signs = rng.choice((1.0, -1.0), size=(SAMPLED_FLIPS, len(d)))
        signs[0] = 1.0  # the observed assignment is one of them
    observed = abs(d.mean())
    flipped = np.abs(signs @ d) / len(d)
    return float(np.mean(flipped >= observed - 1e-12 * max(1.0, observed)))


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student's t interval of the mean; None with fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    from scipy import stats  # here: its import is a second of every command's start

    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def error_resolution(test_images: int | None, errors_pct: list[float | None]) -> float | None:
    """The smallest error difference (percentage points) a test split of `test_images`
    resolves at the errors measured: one binomial standard error of their mean error rate,
    and never below one image. None where the split's size or an error is unknown."""
    known = [e for e in errors_pct if e is not None]
    if not test_images or not known or len(known) < len(errors_pct):
        return None
    rate = min(max(statistics.fmean(known) / 100.0, 0.0), 1.0)
    return 100.0 * max(1.0 / test_images, math.sqrt(rate * (1.0 - rate) / test_images))


@dataclass
class Effect:
    """One of the paper's effects: what, the paper's words or numbers, the direction of its
    difference (+1 or -1) and ours per seed. `paper_effect` is the paper's difference where
    it gives a number; `resolution` the smallest difference our measurement resolves;
    `acted` per seed whether the mechanism changed anything (None: it always acts)."""

    what: str
    paper: str
    direction: int
    differences: list[float | None]
    paper_effect: float | None = None
    resolution: float | None = None
    acted: list[bool] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.differences) and all(v is not None for v in self.differences)

    def summary(self) -> tuple[float | None, float | None]:
        """Mean and standard error (n - 1) of the differences; None while any is missing."""
        if not self.complete:
            return None, None
        values = self.differences
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        return statistics.fmean(values), se

    def p(self) -> float | None:
        return permutation_p(self.differences) if self.complete else None

    def verdict(self) -> str:
        n = len(self.differences)
        if n < MIN_SEEDS:  # before missing: some differences need two seeds to exist at all
            return f"untested: {n} seed(s), needs {MIN_SEEDS}"
        if not self.complete:
            return "missing"
        if self.acted is not None and not any(self.acted):
            return "not applicable"
        if (
            self.resolution is not None
            and self.paper_effect is not None
            and self.resolution > abs(self.paper_effect)
        ):
            return "not resolvable"
        mean, p = statistics.fmean(self.differences), self.p()
        if p < ALPHA and self.direction * mean > 0:
            return "shown"
        if p < ALPHA and self.direction * mean < 0:
            return "opposite"
        return "not shown"

    def record(self) -> dict:
        """Today's keys (as the table shows them) and the test's, as numbers."""
        mean, se = self.summary()
        interval = t_interval(self.differences) if self.complete else None
        return {
            "effect": self.what,
            "paper": self.paper,
            "ours": "-" if mean is None else f"{mean:+.2f}" if se is None else f"{mean:+.2f} ± {se:.2f}",
            "seeds": str(len(self.differences)),
            "per_seed": " / ".join("-" if v is None else f"{v:+.2f}" for v in self.differences),
            "verdict": self.verdict(),
            "mean": mean,
            "standard_error": se,
            "interval_95": list(interval) if interval else None,
            "p": self.p(),
            "test": TEST_NAME,
            "paper_effect": self.paper_effect,
            "resolution": self.resolution,
        }

    def cells(self) -> list[str]:
        return record_cells(self.record())


def record_cells(record: dict) -> list[str]:
    """The row of EFFECT_COLUMNS of an effect's record (the API's and --json's dict)."""
    interval, p = record["interval_95"], record["p"]
    return [
        record["effect"],
        record["paper"],
        record["ours"],
        "-" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]",
        record["seeds"],
        "-" if p is None else f"{p:.3g}",
        record["per_seed"],
        record["verdict"],
    ]


EFFECTS_NOTE = (
    "Differences per seed (both sides from searches of the same seed). p: exact paired permutation "
    "test (every sign flip of the differences), two-sided; interval: Student's t. Shown / opposite: "
    f"p < {ALPHA} in / against the paper's direction (6 seeds at least: with n seeds p cannot go below "
    "2 / 2^n); not applicable: the mechanism changed no seed's cell; not resolvable: the test split "
    "cannot resolve a difference as small as the paper's (one binomial standard error, at least one "
    "image)."
)


def difference(a: list[float | None], b: list[float | None]) -> list[float | None]:
    """b - a per seed."""
    return [None if x is None or y is None else y - x for x, y in zip(a, b)]


def differ(a: list, b: list) -> list[bool]:
    """Per seed, whether the two sides differ (a missing side counts as acting)."""
    return [x is None or y is None or x != y for x, y in zip(a, b)]
