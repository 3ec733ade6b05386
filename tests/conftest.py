import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated datasets go to a per-session cache, never the user's."""
    if "PDARTS_CACHE" not in os.environ:
        os.environ["PDARTS_CACHE"] = str(tmp_path_factory.mktemp("pdarts-cache"))
    yield


def run_cli(*args, cwd=None, env=None, timeout=600):
    """The installed CLI in a fresh process: (returncode, stdout, stderr)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "pdarts_ray.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr
