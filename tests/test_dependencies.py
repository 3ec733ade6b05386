"""Every third-party import is declared in pyproject.toml, so a fresh install has it.

Import names are read with `ast` from every module of the package (they must be runtime
dependencies), of the scripts in ablations/, benchmarks/ and docs/ (runtime dependencies
or an extra), and of the tests (runtime dependencies or the `test` extra); each is mapped
to the distribution that provides it with `importlib.metadata.packages_distributions()`.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib

from helpers.paths import ROOT

# names that are not distributions: the package itself, the tests' helpers, and the
# official P-DARTS modules the benchmark loads from a checkout it is pointed at
LOCAL = {"pdarts_ray", "helpers", "package_graph", "genotypes", "model_search", "refload"}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, set[str]]:
    """Distribution names by group: "runtime" and each extra's name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"runtime": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        groups[extra] = {_requirement_name(r) for r in requirements}
    return groups


def third_party_imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL}


def undeclared(paths, allowed: set[str]) -> dict[str, str]:
    """import name -> file, for imports that no allowed distribution provides."""
    providers = importlib.metadata.packages_distributions()
    out = {}
    for path in paths:
        for name in sorted(third_party_imports(path)):
            dists = {d.lower().replace("_", "-") for d in providers.get(name, [name])}
            if not dists & allowed:
                out[name] = path.name
    return out


GROUPS = declared()
SCRIPTS = [p for folder in ("ablations", "benchmarks", "docs") for p in sorted((ROOT / folder).rglob("*.py"))]


# modules that serve an optional extra, and may import its distributions as well
EXTRA_MODULES = {"mlflow": ("pdarts_ray/results/tracking.py", "pdarts_ray/distributed/tracking.py")}


def test_the_package_imports_only_runtime_dependencies():
    extra_of = {ROOT / path: extra for extra, paths in EXTRA_MODULES.items() for path in paths}
    plain = [p for p in sorted((ROOT / "pdarts_ray").rglob("*.py")) if p not in extra_of]
    assert undeclared(plain, GROUPS["runtime"]) == {}
    for path, extra in extra_of.items():
        assert undeclared([path], GROUPS["runtime"] | GROUPS[extra]) == {}


def test_scripts_import_only_declared_distributions():
    assert undeclared(SCRIPTS, set().union(*GROUPS.values())) == {}


def test_tests_import_only_runtime_or_test_dependencies():
    assert undeclared(sorted((ROOT / "tests").rglob("*.py")), GROUPS["runtime"] | GROUPS["test"]) == {}


def test_matplotlib_is_a_runtime_dependency():
    assert "matplotlib" in GROUPS["runtime"]


def test_an_undeclared_import_is_found(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import os\nimport numpy\nfrom yaml import safe_load\n\ndef f():\n    import matplotlib.pyplot\n"
    )
    assert sorted(third_party_imports(module)) == ["matplotlib", "numpy", "yaml"]
    assert undeclared([module], {"numpy", "pyyaml"}) == {"matplotlib": "module.py"}
