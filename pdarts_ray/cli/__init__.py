"""The `pdarts-ray` command line: one module per command group, each a thin layer over the
core, evaluation, results and Ray layers (the Ray layer is imported only when a command runs)."""


def main(argv=None) -> int:
    from .main import main as run

    return run(argv)
