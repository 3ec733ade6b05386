"""Errors a user can fix: reported as one line, exit code 2, no traceback; and how a
stopped run tells where it was."""

import contextlib


class UserError(Exception):
    """Bad input: a config value, flag, data folder, checkpoint or results file."""


class SearchDiverged(RuntimeError):
    """Training produced a non-finite loss; the message says where."""


class Stopped(KeyboardInterrupt):
    """The process was told to stop (SIGTERM: `ray job stop`, `kill`, a pod's shutdown)."""


class SweepInterrupted(KeyboardInterrupt):
    """Ray Tune ended a sweep early on Ctrl-C (it catches SIGINT, saves its state and returns
    as if the sweep had ended): the driver ends as on Ctrl-C, rather than going on to its next
    sweep. `resume_hint` says how to continue."""

    def __init__(self, name: str, resume_hint: str):
        super().__init__(name)
        self.resume_hint = resume_hint


def stop_on_sigterm():
    """SIGTERM ends a driver as Ctrl-C does, unwinding it: the claims it holds are released
    and its MLflow run marked, so that the run or sweep can be continued at once. (Python's
    default is to exit at once, leaving a claim until its lease lapses.) Returns the handler
    it replaced (None off the main thread, where it changes nothing)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise Stopped(f"signal {signum}")

    return signal.signal(signal.SIGTERM, stop)


@contextlib.contextmanager
def interrupts_name(run_dir):
    """A Ctrl-C or SIGTERM inside carries the run folder (`run_dir` on the exception), so
    that whoever catches it can say how to resume the run, or that it had finished."""
    try:
        yield
    except KeyboardInterrupt as stop:
        if getattr(stop, "run_dir", None) is None:
            stop.run_dir = run_dir
        raise
