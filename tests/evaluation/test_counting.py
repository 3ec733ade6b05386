"""Parameter and multiply-add counts, held against the reference implementation's counts,
and the `genotype params` command."""

import json

import pytest
import torch
import torch.nn as nn
from helpers.cli import run_cli

from pdarts_ray.evaluation.counting import count_macs, count_parameters, genotype_cost
from pdarts_ray.evaluation.genotypes import DARTS_V2, PDARTS
from pdarts_ray.evaluation.network import build_network

# (genotype, dataset, C, layers) -> (params without the auxiliary head, with it, conv + linear MACs).
# Parameter counts are those of the reference code (utils.count_parameters_in_MB x 1e6, which skips
# names containing "auxiliary"); MACs are the same conv + linear rule applied to the reference's network.
REFERENCE = {
    ("PDARTS", "cifar10", 36, 20): (3433798, 3910224, 532174464),
    ("PDARTS", "cifar10", 64, 20): (10521802, 11055572, 1615865856),
    ("PDARTS", "cifar100", 36, 20): (3485728, 4031364, 532226304),
    ("PDARTS", "imagenet", 48, 14): (4944352, 6206664, 542819328),
    ("DARTS_V2", "cifar10", 36, 20): (3349342, 3825768, 528359040),
    ("DARTS_V2", "cifar10", 64, 20): (10310730, 10844500, 1612752896),
    ("DARTS_V2", "imagenet", 48, 14): (4718752, 5981064, 529911552),
}
GENOTYPES = {"PDARTS": PDARTS, "DARTS_V2": DARTS_V2}


@pytest.mark.parametrize("key", list(REFERENCE), ids=lambda k: "-".join(map(str, k)))
def test_published_genotype_counts_match_the_reference(key):
    name, dataset, C, layers = key
    params, with_aux, macs = REFERENCE[key]
    assert genotype_cost(GENOTYPES[name], dataset, C, layers) == {
        "params": params,
        "params_with_aux": with_aux,
        "macs": macs,
    }


def test_paper_table_figures():
    # Table 1: 3.4 M (C=36) and 10.5 M (C=64) on CIFAR-10; Table 2: 4.9 M on ImageNet
    assert round(genotype_cost(PDARTS, "cifar10")["params"] / 1e6, 1) == 3.4
    assert round(genotype_cost(PDARTS, "cifar10", 64)["params"] / 1e6, 1) == 10.5
    assert round(genotype_cost(PDARTS, "imagenet")["params"] / 1e6, 1) == 4.9


def test_counting_rules_on_a_small_real_network():
    torch.manual_seed(0)
    net = build_network(PDARTS, "cifar", 4, 10, 5, auxiliary=True)
    aux = sum(p.numel() for p in net.auxiliary_head.parameters())
    assert count_parameters(net, include_auxiliary=True) == sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == count_parameters(net, include_auxiliary=True) - aux
    # by hand: the stem conv (32*32 outputs of 12 channels, 27 weights each) and the classifier
    stem = net.stem[0]
    expected_stem = 32 * 32 * 12 * 27
    seen = []
    handle = stem.register_forward_hook(lambda m, i, o: seen.append(o.numel() * 27))
    total = count_macs(net, 32)
    handle.remove()
    assert seen == [expected_stem]
    assert total > expected_stem + net.classifier.in_features * 10
    assert net.training  # the mode is restored
    assert total == genotype_cost(PDARTS, "cifar10", 4, 5)["macs"]  # the meta-device count agrees


def test_count_macs_of_conv_and_linear_layers():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.depthwise = nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.bn(self.depthwise(self.conv(x)))
            return self.fc(x.mean((2, 3)))

    assert count_macs(Tiny(), 16) == 16 * 16 * 8 * 3 * 9 + 8 * 8 * 8 * 1 * 25 + 8 * 5


def test_genotype_params_cli_prints_the_paper_figure():
    code, stdout, stderr = run_cli(
        "genotype", "params", "PDARTS", "--dataset", "cifar10", "--channels", 36, "--layers", 20
    )
    assert code == 0, stderr
    assert "3.43 M parameters" in stdout


@pytest.mark.slow
def test_genotype_params_cli_json_defaults(tmp_path):
    code, stdout, _ = run_cli("genotype", "params", "PDARTS", "--dataset", "imagenet", "--json")
    params, with_aux, macs = REFERENCE[("PDARTS", "imagenet", 48, 14)]
    assert json.loads(stdout) == {"params": params, "params_with_aux": with_aux, "macs": macs}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(DARTS_V2.to_dict()))
    code, stdout, _ = run_cli("genotype", "params", path, "--channels", 64, "--json")
    assert code == 0 and json.loads(stdout)["params"] == REFERENCE[("DARTS_V2", "cifar10", 64, 20)][0]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["PDARTS", "--channels", "0"], "--channels: must be at least 1"),
        (["PDARTS", "--dataset", "imagenet", "--channels", "47"], "even"),
        (["PDARTS", "--layers", "2"], "layers"),
        (["NO_SUCH_CELL"], "unknown genotype 'NO_SUCH_CELL'"),
        (["PDARTS", "--dataset", "mnist"], "invalid choice"),
    ],
)
def test_genotype_params_bad_input_is_one_line(args, fragment):
    code, stdout, stderr = run_cli("genotype", "params", *args, "--json")
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1 and stdout == ""


def test_cli_dataset_choices_are_the_counting_settings():
    from pdarts_ray.cli.evaluate import COUNT_DATASETS
    from pdarts_ray.evaluation.counting import COUNT_SETTINGS

    assert COUNT_DATASETS == tuple(COUNT_SETTINGS)
