"""The `pdarts-ray` command line: one module per command group, each a thin layer over the
core, evaluation, results and Ray layers (the Ray layer is imported only when a command runs)."""

# The submodule loads first: importing it later would put the module on the package in
# place of the function below (the console script's entry point).
from . import main as _main


def main(argv=None) -> int:
    return _main.main(argv)
