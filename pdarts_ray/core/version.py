"""The package's version, which every stored row and result file records."""

VERSION = "0.2.0"
# files that record no version were written by the first release
FIRST_VERSION = "0.1.0"


def version_key(version: str) -> tuple[int, ...]:
    """`"0.10.1"` -> (0, 10, 1): versions compare as numbers, not as text."""
    return tuple(int(part) for part in version.split("."))
