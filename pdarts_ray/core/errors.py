"""Errors a user can fix: reported as one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input: a config value, flag, data folder, checkpoint or results file."""


class SearchDiverged(RuntimeError):
    """Training produced a non-finite loss; the message says where."""
