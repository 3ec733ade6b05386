"""The wheel and the sdist hold what the package needs at run time: built with `python -m
build` from a copy of the tree, the wheel installed (not editable) into a fresh virtual
environment runs a smoke search and the docs' Python example from a folder outside the tree.

The fresh environment sees this environment's installed distributions (torch, Ray, ...)
through a path entry appended to its sys.path, so that installing takes seconds and no
download; the project itself comes from the wheel alone (an editable install's hooks are
not read from an appended path), which the test checks.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from helpers.paths import ROOT

pytestmark = pytest.mark.slow
KEEP_OUT = ("tests", "benchmarks", ".git", "build", "dist", "__pycache__", "pdarts-runs", "pdarts-reproduce")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    source = tmp_path_factory.mktemp("source") / "pdarts-ray"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*KEEP_OUT, "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def package_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "pdarts_ray").rglob("*.py")}


def test_the_wheel_holds_every_module_and_the_command(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = re.findall(r"^Requires-Dist: (.+)$", z.read(metadata).decode(), re.M)
    assert package_modules() <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert "pdarts-ray = pdarts_ray.cli:main" in scripts
    assert any(r.startswith("ray[") and "==2.60.0" in r for r in requires)
    assert any(r.startswith("mlflow-skinny") and 'extra == "mlflow"' in r for r in requires)


def test_the_sdist_holds_the_sources(built):
    _, sdist = built
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md"} <= names
    assert package_modules() <= names


@pytest.fixture(scope="module")
def fresh_env(built, tmp_path_factory):
    wheel, _ = built
    home = tmp_path_factory.mktemp("venv")
    venv.create(home / "env", with_pip=True)
    python = home / "env" / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # a plain path entry: this environment's distributions, but not its editable install;
    # the new environment's own (older) setuptools would hide this one's, which torch needs
    Path(site, "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"], capture_output=True)
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python


def _outside_the_tree() -> dict[str, str]:
    """This environment without PYTHONPATH, which could put the source tree ahead of the wheel."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_installed_wheel_runs_a_search(fresh_env, tmp_path):
    where = subprocess.run(
        [fresh_env, "-c", "import pdarts_ray; print(pdarts_ray.__file__)"],
        cwd=tmp_path,
        env=_outside_the_tree(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(Path(fresh_env).parent.parent) in where  # the wheel's copy, not the source tree
    command = Path(fresh_env).parent / "pdarts-ray"
    proc = subprocess.run(
        [command, "search", "--preset", "smoke", "--out", "run", "--json"],
        cwd=tmp_path,
        env=_outside_the_tree(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "genotype.json").is_file()


def test_the_docs_python_example_runs_from_the_wheel(fresh_env, tmp_path):
    """docs/python.md's example as written: a search, its retraining, a sweep on a local Ray,
    the store read with pandas, a table rendered from the store."""
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), re.S)
    proc = subprocess.run(
        [fresh_env, "-c", block],
        cwd=tmp_path,
        env=_outside_the_tree(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"best valid accuracy 0\.\d{3}; \d skip-connects before refinement", out)
    assert re.search(r"\d+\.\d % test error, \d+ parameters", out)
    assert len(re.findall(r"\bfinished\b", out)) == 2  # the sweep's two trials, as a pandas frame
    assert (tmp_path / "store" / "seeds" / "trials").is_dir()
    assert (tmp_path / "runs" / "eval-smoke-3" / "weights.pt").is_file()
