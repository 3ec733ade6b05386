"""The `genotype` and `bench` commands, --json purity, --help and --version."""
import json

import pytest

from conftest import FIXTURES, run_cli



def _case_file(tmp_path, fixture, index):
    case = json.loads((FIXTURES / fixture).read_text())["cases"][index]
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"primitives": json.loads((FIXTURES / fixture).read_text())["primitives"],
                                "normal": case["normal"], "reduce": case["reduce"], "extra": 1}))
    return case, path


def test_genotype_derive_json(tmp_path):
    case, path = _case_file(tmp_path, "genotype_fixtures.json", 4)
    code, stdout, stderr = run_cli("genotype", "derive", path, "--skip-connects", case["M"], "--json")
    assert code == 0, stderr
    assert json.loads(stdout) == case["expected"]["genotype"]
    code, stdout, _ = run_cli("genotype", "derive", path, "--json")
    assert json.loads(stdout) == case["expected"]["genotype_before_restriction"]


def test_genotype_prune_json(tmp_path):
    case, path = _case_file(tmp_path, "switch_fixtures.json", 0)
    args = ["genotype", "prune", path, "--drop", case["num_to_drop"], "--json"]
    code, stdout, stderr = run_cli(*args + (["--last-stage"] if case["is_last_stage"] else []))
    assert code == 0, stderr
    assert json.loads(stdout) == case["expected"]


@pytest.mark.parametrize("content, fragment", [
    ("{", "not valid JSON"),
    ('{"normal": {"switches": [], "alphas": []}}', "normal.switches"),
    ('{"primitives": ["none"], "normal": {}, "reduce": {}}', "primitives differ"),
    ('[1]', "expected a JSON object"),
])
def test_genotype_derive_bad_state(tmp_path, content, fragment):
    path = tmp_path / "s.json"
    path.write_text(content)
    code, stdout, stderr = run_cli("genotype", "derive", path, "--json")
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1 and stdout == ""


def test_genotype_prune_too_many(tmp_path):
    _, path = _case_file(tmp_path, "genotype_fixtures.json", 0)
    code, _, stderr = run_cli("genotype", "prune", path, "--drop", 3)
    assert code == 2 and "--drop" in stderr


def test_bench_step_json():
    code, stdout, stderr = run_cli("bench", "step", "--stage", "3", "--batch", "2", "--device", "cpu", "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == {"stage", "batch", "device", "median_step_s", "peak_memory_bytes"}
    assert result["stage"] == 3 and result["batch"] == 2 and result["device"] == "cpu"
    assert result["median_step_s"] > 0 and result["peak_memory_bytes"] > 2**20


def test_version_and_help():
    code, stdout, _ = run_cli("--version")
    assert code == 0 and stdout.startswith("pdarts-ray ")
    for cmd in (["search"], ["presets"], ["genotype", "derive"], ["genotype", "prune"], ["bench", "step"]):
        code, stdout, _ = run_cli(*cmd, "--help")
        assert code == 0 and "usage: pdarts-ray" in stdout


def test_presets_json():
    code, stdout, _ = run_cli("presets", "--json")
    presets = json.loads(stdout)
    assert {"paper-c10", "paper-c100", "tiny", "smoke"} <= set(presets)
    assert presets["tiny"]["config"]["dataset"] == "digits"
