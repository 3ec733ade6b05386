"""The package's version, which every stored row and result file records."""

VERSION = "0.1.0"
