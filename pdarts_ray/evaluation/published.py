"""Published cells of the DARTS family, by name, with where each comes from.

Every genotype here is data copied from its authors' public `genotypes.py` (the file and
commit are named): two (op, input) genes per intermediate node, input 0 = c_{k-2},
1 = c_{k-1}, 2 + n = node n. NASNet and AmoebaNet have five nodes and concatenate only
the nodes no other node reads; the DARTS-space cells have four and concatenate all.

`params_authors_code` is the parameter count (auxiliary head excluded) of the CIFAR-10
network the authors' own model code builds from the cell with C = 36 and 20 cells
(`NetworkCIFAR(36, 10, 20, False, genotype)` of the named repository, counted as its
`utils.count_parameters_in_MB` counts); tests hold this package's count to it exactly.
`error_pct` and `params_m` are what the cell's paper (or README) reports for CIFAR-10.
NASNet-A and AmoebaNet-A were trained in their own, different networks by their authors,
so their published parameter counts are not those of this network.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.space import Genotype


@dataclass(frozen=True)
class Published:
    name: str
    genotype: Genotype
    method: str  # the paper
    source: str  # repository file and commit the genes come from
    params_authors_code: int  # C = 36, 20 cells, CIFAR-10, no auxiliary head
    error_pct: str  # CIFAR-10 test error as published
    params_m: str  # parameters as published (millions)
    reported_in: str


def _g(normal, reduce, normal_concat=(2, 3, 4, 5), reduce_concat=(2, 3, 4, 5)) -> Genotype:
    return Genotype(tuple(normal), tuple(reduce), tuple(normal_concat), tuple(reduce_concat))


PDARTS_REPO = "chenxin061/pdarts genotypes.py @ b880e87"

CELLS = [
    Published(
        "NASNet",
        _g(
            [
                ("sep_conv_5x5", 1),
                ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 0),
                ("sep_conv_3x3", 0),
                ("avg_pool_3x3", 1),
                ("skip_connect", 0),
                ("avg_pool_3x3", 0),
                ("avg_pool_3x3", 0),
                ("sep_conv_3x3", 1),
                ("skip_connect", 1),
            ],
            [
                ("sep_conv_5x5", 1),
                ("sep_conv_7x7", 0),
                ("max_pool_3x3", 1),
                ("sep_conv_7x7", 0),
                ("avg_pool_3x3", 1),
                ("sep_conv_5x5", 0),
                ("skip_connect", 3),
                ("avg_pool_3x3", 2),
                ("sep_conv_3x3", 2),
                ("max_pool_3x3", 1),
            ],
            normal_concat=(2, 3, 4, 5, 6),
            reduce_concat=(4, 5, 6),
        ),
        "NASNet-A (Zoph et al., CVPR 2018)",
        PDARTS_REPO,
        3_830_950,
        "2.65",
        "3.3",
        "Zoph et al. 2018, Table 1 (NASNet-A 6 @ 768, cutout)",
    ),
    Published(
        "AmoebaNet",
        _g(
            [
                ("avg_pool_3x3", 0),
                ("max_pool_3x3", 1),
                ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0),
                ("avg_pool_3x3", 3),
                ("sep_conv_3x3", 1),
                ("skip_connect", 1),
                ("skip_connect", 0),
                ("avg_pool_3x3", 1),
            ],
            [
                ("avg_pool_3x3", 0),
                ("sep_conv_3x3", 1),
                ("max_pool_3x3", 0),
                ("sep_conv_7x7", 2),
                ("sep_conv_7x7", 0),
                ("avg_pool_3x3", 1),
                ("max_pool_3x3", 0),
                ("max_pool_3x3", 1),
                ("conv_7x1_1x7", 0),
                ("sep_conv_3x3", 5),
            ],
            normal_concat=(4, 5, 6),
            reduce_concat=(3, 4, 6),
        ),
        "AmoebaNet-A (Real et al., AAAI 2019)",
        PDARTS_REPO,
        3_145_078,
        "3.34 ± 0.06",
        "3.2",
        "Real et al. 2019, as DARTS (Liu et al., ICLR 2019) Table 1 reports it",
    ),
    Published(
        "DARTS_V1",
        _g(
            [
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0),
                ("skip_connect", 0),
                ("sep_conv_3x3", 1),
                ("skip_connect", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0),
                ("skip_connect", 2),
            ],
            [
                ("max_pool_3x3", 0),
                ("max_pool_3x3", 1),
                ("skip_connect", 2),
                ("max_pool_3x3", 0),
                ("max_pool_3x3", 0),
                ("skip_connect", 2),
                ("skip_connect", 2),
                ("avg_pool_3x3", 0),
            ],
        ),
        "DARTS, first order (Liu et al., ICLR 2019)",
        PDARTS_REPO,
        3_169_414,
        "3.00 ± 0.14",
        "3.3",
        "Liu et al. 2019, Table 1",
    ),
    Published(
        "DARTS_V2",
        _g(
            [
                ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1),
                ("skip_connect", 0),
                ("skip_connect", 0),
                ("dil_conv_3x3", 2),
            ],
            [
                ("max_pool_3x3", 0),
                ("max_pool_3x3", 1),
                ("skip_connect", 2),
                ("max_pool_3x3", 1),
                ("max_pool_3x3", 0),
                ("skip_connect", 2),
                ("skip_connect", 2),
                ("max_pool_3x3", 1),
            ],
        ),
        "DARTS, second order (Liu et al., ICLR 2019)",
        PDARTS_REPO,
        3_349_342,
        "2.76 ± 0.09",
        "3.3",
        "Liu et al. 2019, Table 1",
    ),
    Published(
        "PDARTS",
        _g(
            [
                ("skip_connect", 0),
                ("dil_conv_3x3", 1),
                ("skip_connect", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 0),
                ("dil_conv_5x5", 4),
            ],
            [
                ("avg_pool_3x3", 0),
                ("sep_conv_5x5", 1),
                ("sep_conv_3x3", 0),
                ("dil_conv_5x5", 2),
                ("max_pool_3x3", 0),
                ("dil_conv_3x3", 1),
                ("dil_conv_3x3", 1),
                ("dil_conv_5x5", 3),
            ],
        ),
        "P-DARTS (Chen et al., ICCV 2019)",
        PDARTS_REPO,
        3_433_798,
        "2.50",
        "3.4",
        "Chen et al. 2019, Table 1",
    ),
    Published(
        "PC_DARTS",
        _g(
            [
                ("sep_conv_3x3", 1),
                ("skip_connect", 0),
                ("sep_conv_3x3", 0),
                ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0),
                ("sep_conv_3x3", 1),
                ("avg_pool_3x3", 0),
                ("dil_conv_3x3", 1),
            ],
            [
                ("sep_conv_5x5", 1),
                ("max_pool_3x3", 0),
                ("sep_conv_5x5", 1),
                ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 2),
            ],
        ),
        "PC-DARTS (Xu et al., ICLR 2020)",
        "yuhuixu1993/PC-DARTS genotypes.py PC_DARTS_cifar",
        3_634_678,
        "2.57 ± 0.07",
        "3.6",
        "Xu et al. 2020, Table 1",
    ),
    Published(
        "DrNAS",
        _g(
            [
                ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 1),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 2),
                ("skip_connect", 0),
                ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 2),
                ("dil_conv_5x5", 3),
            ],
            [
                ("max_pool_3x3", 0),
                ("sep_conv_5x5", 1),
                ("dil_conv_5x5", 2),
                ("sep_conv_5x5", 1),
                ("sep_conv_5x5", 1),
                ("dil_conv_5x5", 3),
                ("skip_connect", 4),
                ("sep_conv_5x5", 1),
            ],
        ),
        "DrNAS (Chen et al., ICLR 2021)",
        "xiangning-chen/DrNAS DARTS-space/genotypes.py DrNAS_cifar10",
        4_099_294,
        "2.46 ± 0.03",
        "4.1",
        "the DrNAS repository's README, DARTS space on CIFAR-10",
    ),
]

PUBLISHED_CELLS: dict[str, Published] = {c.name: c for c in CELLS}


def canonical_name(text: str) -> str | None:
    """A published cell's name for a user's spelling (PC-DARTS, pcdarts, P-DARTS, darts_v2...)."""
    key = text.strip().upper().replace("-", "").replace("_", "")
    for name in PUBLISHED_CELLS:
        if name.upper().replace("_", "") == key:
            return name
    return None
