"""Running the package's command line, in a fresh process or in this one."""

import contextlib
import io
import os
import subprocess
import sys


def run_cli(*args, cwd=None, env=None, timeout=600):
    """The installed CLI in a fresh process: (returncode, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "pdarts_ray.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def main_output(*argv) -> tuple[int, str, str]:
    """The CLI's main() in this process, for commands that start no Ray: (returncode, stdout,
    stderr), as run_cli gives them."""
    from pdarts_ray.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def main_stdout(*argv) -> tuple[int, str]:
    """The CLI's main() in this process: (returncode, what it printed on stdout)."""
    code, out, _ = main_output(*argv)
    return code, out
