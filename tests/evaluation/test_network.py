"""Evaluation networks: every op's eval form, cell wiring, drop path, the auxiliary head,
the CIFAR and ImageNet layouts of the design fixtures, and published genotypes by name or file."""

import json

import pytest
import torch
import torch.nn as nn
from helpers.cli import run_cli
from helpers.paths import FIXTURES, ROOT

from pdarts_ray.core.errors import UserError
from pdarts_ray.core.ops import FactorizedReduce, Identity, build_op
from pdarts_ray.core.space import PRIMITIVES, Genotype
from pdarts_ray.evaluation.counting import genotype_cost
from pdarts_ray.evaluation.genotypes import DARTS_V2, PDARTS, PUBLISHED, load_genotype
from pdarts_ray.evaluation.network import (
    EvalCell,
    NetworkCIFAR,
    NetworkImageNet,
    auxiliary_input_size,
    build_network,
    drop_path,
)

EVAL_OPS = [p for p in PRIMITIVES if p != "none"]


def _op_params(name: str, C: int, stride: int) -> int:
    """Parameters of an op's eval form, from its definition (affine BN: 2 per channel)."""
    k = {"3x3": 3, "5x5": 5}.get(name[-3:])
    if name.startswith("sep_conv"):
        return 2 * (k * k * C + C * C + 2 * C)
    if name.startswith("dil_conv"):
        return k * k * C + C * C + 2 * C
    if name == "skip_connect" and stride == 2:
        return 2 * C * (C // 2) + 2 * C  # FactorizedReduce
    return 0  # pooling, identity


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", EVAL_OPS)
def test_every_op_in_its_eval_form(name, stride):
    C = 6
    torch.manual_seed(0)
    op = build_op(name, C, stride, affine=True)
    assert sum(p.numel() for p in op.parameters()) == _op_params(name, C, stride)
    norms = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.affine for m in norms)
    if name == "skip_connect":
        assert isinstance(op, Identity if stride == 1 else FactorizedReduce)
    x = torch.randn(4, C, 10, 10)
    op.train()
    for _ in range(3):
        op(x)  # move the BN running statistics away from their initial values
    op.eval()
    y = op(x)
    assert y.shape == (4, C, 10 // stride, 10 // stride)
    assert torch.equal(op(x), y)  # eval form: deterministic, no batch statistics
    if norms:  # running statistics, not the batch's: a sample's output does not depend on its batch
        assert torch.allclose(op(x[:1]), y[:1], atol=1e-6)
        op.train()
        assert not torch.allclose(op(x[:1]), y[:1], atol=1e-3)


def test_cell_wiring_follows_the_genes():
    cell = EvalCell(PDARTS.normal, PDARTS.normal_concat, 12, 12, 4, reduction=False, reduction_prev=False)
    assert [type(op).__name__ for op in cell.ops][:2] == ["Identity", "DilConv"]
    assert cell.inputs == [0, 1, 0, 1, 1, 3, 0, 4]
    assert cell.droppable == [op != "skip_connect" for op, _ in PDARTS.normal]
    out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8))
    assert out.shape == (2, 16, 8, 8)
    reduce = EvalCell(PDARTS.reduce, PDARTS.reduce_concat, 16, 16, 8, reduction=True, reduction_prev=False)
    strides = [getattr(op, "stride", None) for op in reduce.ops]
    assert strides[0] == 2 and strides[4] == 2  # avg_pool from c_k-2, max_pool from c_k-2
    assert reduce(torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    after_reduction = EvalCell(PDARTS.normal, PDARTS.normal_concat, 16, 32, 8, False, reduction_prev=True)
    assert isinstance(after_reduction.preprocess0, FactorizedReduce)
    assert after_reduction(torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)).shape == (2, 32, 4, 4)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = torch.isclose(per_sample, torch.tensor(1 / 0.7)).all(1)
    assert (dropped | kept).all()
    assert (per_sample == 0).all(1).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert y.mean().item() == pytest.approx(1.0, abs=0.05)


def test_drop_path_only_on_non_identity_branches_and_only_in_training():
    genotype = Genotype(
        normal=(("skip_connect", 0), ("skip_connect", 1)) * 4,
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4,
    )
    cell = EvalCell(genotype.normal, genotype.normal_concat, 4, 4, 4, False, False)
    cell.train()
    s0, s1 = torch.randn(64, 4, 5, 5), torch.randn(64, 4, 5, 5)
    torch.manual_seed(0)
    with_drop = cell(s0, s1, drop_prob=0.9)
    torch.manual_seed(0)
    assert torch.equal(with_drop, cell(s0, s1, drop_prob=0.0))  # identities are never dropped
    conv_cell = EvalCell(PDARTS.normal, PDARTS.normal_concat, 4, 4, 4, False, False).eval()
    assert torch.equal(conv_cell(s0, s1, 0.9), conv_cell(s0, s1, 0.0))  # eval mode: no drop path
    conv_cell.train()
    torch.manual_seed(1)
    dropped = conv_cell(s0, s1, 0.9)
    torch.manual_seed(1)
    assert not torch.equal(dropped, conv_cell(s0, s1, 0.0))


@pytest.mark.parametrize(
    "key, cls, C, layers",
    [
        ("eval_cifar_20cells_C36", NetworkCIFAR, 36, 20),
        ("eval_imagenet_14cells_C48", NetworkImageNet, 48, 14),
    ],
)
def test_layouts_match_the_design_fixtures(key, cls, C, layers):
    expected = json.loads((FIXTURES / "schedules.json").read_text())["layouts"][key]
    with torch.device("meta"):
        net = cls(PDARTS, C, 10, layers, auxiliary=True)
    assert [list(c) for c in net.layout()] == expected["cells"]
    assert [i for i, (_, kind) in enumerate(net.layout()) if kind == "R"] == expected["reduction_cells"]
    stem_out = net.stem[0].out_channels if cls is NetworkCIFAR else net.stem1[1].out_channels
    assert stem_out == expected["stem_out"]
    assert all(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("network, image, aux_side", [("cifar", 32, 8), ("imagenet", 224, 7)])
def test_forward_and_auxiliary_head_position(network, image, aux_side):
    torch.manual_seed(0)
    layers = 5 if network == "cifar" else 6
    net = build_network(PDARTS, network, 4, 7, layers, auxiliary=True)
    seen = []
    net.auxiliary_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    net.drop_path_prob = 0.2
    net.train()
    logits, aux = net(torch.randn(2, 3, image, image))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    assert seen == [torch.Size([2, 4 * 4 * 4, aux_side, aux_side])]  # after the second reduction (C x 4)
    assert auxiliary_input_size(network, image) == aux_side
    assert net.aux_index == 2 * layers // 3 and net.layout()[net.aux_index][1] == "R"
    net.eval()
    logits, aux = net(torch.randn(2, 3, image, image))
    assert aux is None and len(seen) == 1  # the head is not run at inference


def test_network_rejects_bad_sizes():
    with pytest.raises(ValueError, match="channels: must be at least 1"):
        build_network(PDARTS, "cifar", 0, 10, 20, True)
    with pytest.raises(ValueError, match="even"):
        build_network(PDARTS, "imagenet", 47, 10, 14, True)
    with pytest.raises(ValueError, match="layers"):
        build_network(PDARTS, "cifar", 16, 10, 2, True)


# ---------------------------------------------------------------- published genotypes

OFFICIAL_PDARTS_TEXT = (
    "PDARTS = Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),('sep_conv_3x3', 1), "  # noqa: E501
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), "  # noqa: E501
    "reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), "
    "('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))\n"  # noqa: E501
)


def test_published_genotypes_by_name():
    assert set(PUBLISHED) == {"NASNet", "AmoebaNet", "DARTS_V1", "DARTS_V2", "PDARTS", "PC_DARTS", "DrNAS"}
    assert load_genotype("PDARTS") == ("PDARTS", PDARTS)
    assert load_genotype("darts_v2") == ("DARTS_V2", DARTS_V2)
    for spelling, name in [
        ("P-DARTS", "PDARTS"),
        ("pc-darts", "PC_DARTS"),
        ("PCDARTS", "PC_DARTS"),
        ("drnas", "DrNAS"),
        ("nasnet", "NASNet"),
        ("AMOEBANET", "AmoebaNet"),
    ]:
        assert load_genotype(spelling)[0] == name
    assert PDARTS.skip_count() == 2 and DARTS_V2.skip_count() == 2
    assert PDARTS.normal_concat == PDARTS.reduce_concat == (2, 3, 4, 5)


def test_genotype_files(tmp_path):
    official = tmp_path / "genotypes.py"
    official.write_text(OFFICIAL_PDARTS_TEXT)
    assert load_genotype(str(official))[1] == PDARTS
    as_json = tmp_path / "genotype.json"
    as_json.write_text(json.dumps(DARTS_V2.to_dict()))
    assert load_genotype(str(as_json)) == (str(as_json), DARTS_V2)
    assert load_genotype(str(tmp_path))[1] == DARTS_V2  # a search run folder: its genotype.json
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"top1": 0.9, "genotype": PDARTS.to_dict()}))
    assert load_genotype(str(result))[1] == PDARTS


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{", "invalid JSON"),
        ('{"normal": [["sep_conv_3x3", 0]], "reduce": []}', "two genes per node"),
        (
            '{"normal": [["conv_9x9", 0], ["sep_conv_3x3", 1]], "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]}',  # noqa: E501
            "unknown op 'conv_9x9'",
        ),
        ("Genotype(normal=__import__('os').system('true'))", "must be a literal"),
        ("print('hello')", "Genotype(...)"),
    ],
)
def test_malformed_genotype_files_are_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "g.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=None) as err:
        load_genotype(str(path))
    assert fragment in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_unknown_genotype_name():
    with pytest.raises(UserError, match="unknown genotype 'PDARTS_V9'") as err:
        load_genotype("PDARTS_V9")
    assert all(name in str(err.value) for name in PUBLISHED)  # it lists the names it knows


@pytest.mark.parametrize(
    "name", ["NASNet", "AmoebaNet", "DARTS_V1", "DARTS_V2", "PDARTS", "PC_DARTS", "DrNAS"]
)
def test_every_published_cell_counts_as_its_authors_code_counts_it(name):
    """C = 36, 20 cells, CIFAR-10, no auxiliary head: the authors' NetworkCIFAR gave these."""
    from pdarts_ray.evaluation.published import PUBLISHED_CELLS

    cell = PUBLISHED_CELLS[name]
    assert genotype_cost(cell.genotype, "cifar10")["params"] == cell.params_authors_code
    # and the network trains: one step of the real model on a small batch
    net = build_network(cell.genotype, "cifar", 8, 10, 5, auxiliary=True).train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    (logits.sum() + aux.sum()).backward()
    assert logits.shape == (2, 10)


def test_genotype_list_and_the_docs_name_every_published_cell_with_its_count():
    from pdarts_ray.evaluation.published import PUBLISHED_CELLS

    code, out, err = run_cli("genotype", "list")
    assert code == 0, err
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in (ROOT / "docs" / "evaluation.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for name, cell in PUBLISHED_CELLS.items():
        assert any(line.split()[0] == name and cell.method in line for line in out.splitlines()), name
        assert f"| {cell.params_authors_code:,} |" in rows[name] and cell.error_pct in rows[name], name
