"""The published numbers that `pdarts-ray reproduce` sets beside its own, each with its source.

Chen, Xie, Wu, Tian: "Progressive Differentiable Architecture Search: Bridging the Depth
Gap between Search and Evaluation", ICCV 2019. Test errors are percentages on CIFAR-10
unless a key says otherwise; parameters are millions; memory is GB as the paper prints it.
The diagnostic experiments (section 4.4) were all run on CIFAR-10.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    value: float
    source: str
    digits: int = 2  # decimals as the paper prints the number

    @property
    def text(self) -> str:
        return f"{self.value:.{self.digits}f}"


def _p(value: float, source: str, digits: int = 2) -> Published:
    return Published(value, source, digits)


_T3 = "Table 3 (peak GPU memory, batch 96, 16 GB P100)"
# Table 3: three independent searches, stages 1-3.
TABLE3_MEMORY_GB: list[list[Published]] = [
    [_p(9.8, _T3, 1), _p(14.0, _T3, 1), _p(14.2, _T3, 1)],
    [_p(9.8, _T3, 1), _p(14.4, _T3, 1), _p(14.5, _T3, 1)],
    [_p(9.8, _T3, 1), _p(14.2, _T3, 1), _p(14.3, _T3, 1)],
]

_F3 = "Figure 3 / section 4.4.1"
# Figure 3: the normal cells found after each stage, retrained, and DARTS V2 retrained the same way.
DEPTH_ERROR_PCT: dict[str, Published] = {
    "stage 1": _p(2.90, _F3),
    "stage 2": _p(2.82, _F3),
    "stage 3": _p(2.58, _F3),
    "DARTS_V2": _p(2.83, _F3),
}

_S442 = "section 4.4.2"
APPROX_ERROR_PCT: dict[str, Published] = {
    "approximated": _p(2.58, _S442),
    "random (best of 3)": _p(3.43, _S442),
}

_S443 = "section 4.4.3"
DROPOUT_ERROR_PCT: dict[str, dict[int, Published]] = {
    "0.0/0.0/0.0": {2: _p(2.93, _S443), 3: _p(3.28, _S443), 4: _p(3.51, _S443)},
    "0.0/0.3/0.6": {2: _p(2.69, _S443), 3: _p(2.84, _S443), 4: _p(2.97, _S443)},
}
# skip-connects in the normal cell before refinement
DROPOUT_SKIPS_BEFORE: dict[str, Published] = {"0.0/0.0/0.0": _p(8, _S443, 0), "0.0/0.3/0.6": _p(4, _S443, 0)}

SKIP_ERROR_PCT: dict[int, Published] = {
    0: _p(2.78, _S443),
    1: _p(2.68, _S443),
    2: _p(2.69, _S443),
    3: _p(2.84, _S443),
    4: _p(2.97, _S443),
}
SKIP_PARAMS_M: dict[int, Published] = {
    0: _p(4.1, _S443, 1),
    1: _p(3.7, _S443, 1),
    2: _p(3.3, _S443, 1),
    3: _p(3.0, _S443, 1),
    4: _p(2.7, _S443, 1),
}

REFINE_ERROR_PCT: dict[str, tuple[Published, Published]] = {  # (mean, standard deviation) of 3 searches
    "before": (_p(2.79, _S443), _p(0.16, _S443)),
    "after": (_p(2.65, _S443), _p(0.05, _S443)),
}
REFINE_SKIPS: dict[str, list[Published]] = {
    "before": [_p(2, _S443, 0), _p(3, _S443, 0), _p(4, _S443, 0)],
    "after": [_p(2, _S443, 0), _p(2, _S443, 0), _p(2, _S443, 0)],
}

_T1 = "Table 1"
# Table 1, the P-DARTS rows: the cell searched on each dataset, retrained on it (C = 36, 20 cells).
TABLE1: dict[str, dict[str, Published]] = {
    "cifar10": {
        "error_pct": _p(2.50, _T1 + " (P-DARTS CIFAR10 + cutout, C10 column)"),
        "params_m": _p(3.4, _T1 + " (P-DARTS CIFAR10 + cutout)", 1),
        "search_gpu_days": _p(0.3, _T1 + " (P-DARTS CIFAR10 + cutout)", 1),
    },
    "cifar100": {
        "error_pct": _p(15.92, _T1 + " (P-DARTS CIFAR100 + cutout, C100 column)"),
        "params_m": _p(3.6, _T1 + " (P-DARTS CIFAR100 + cutout)", 1),
        "search_gpu_days": _p(0.3, _T1 + " (P-DARTS CIFAR100 + cutout)", 1),
    },
}
