"""Ports, process groups, and the Ray processes below a pid and the environment they started with."""

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path


def kill_group(proc, stop_local_ray: bool = False) -> None:
    """SIGKILL a process started with start_new_session=True and all its children; with
    `stop_local_ray`, every process below it first, the local Ray it started among them (Ray
    starts its GCS and raylet in sessions of their own, so they outlive the group). Only what
    this process started: never another Ray on the machine, nor a Ray the test's own process
    runs (a driver whose raylet is killed exits, and would take the pytest worker with it)."""
    if stop_local_ray and proc.poll() is None:
        kill_tree(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_tree(root: int) -> None:
    """SIGKILL `root` and every process below it. All are stopped first, so that none starts
    a process that, its parent killed, would no longer be below `root`."""
    stopped: set[int] = set()
    while tree := _below({root}) - stopped:
        for pid in tree:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= tree
    for pid in stopped:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            pass
    return parents


def _below(roots: set[int]) -> set[int]:
    """`roots` and every process below them."""
    parents = _parents()
    below, grew = set(roots), True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        below, grew = below | found, bool(found)
    return below


def ray_processes_of(temp_root) -> set[int]:
    """The Ray processes of the Ray (or Rays) whose temp folder lies under `temp_root`: those
    whose command line names it (GCS, raylet, dashboard, ...) and every process below them
    (the workers a raylet starts carry only their title)."""
    named = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(temp_root).encode() in (proc / "cmdline").read_bytes():
                named.add(int(proc.name))
        except OSError:
            pass
    return _below(named - {os.getpid()})


def stop_ray_of(temp_root) -> None:
    """SIGKILL the Ray processes of `temp_root` (see ray_processes_of)."""
    for pid in ray_processes_of(temp_root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_processes_under(root: int) -> dict[int, str]:
    """pid -> title (`ray::RayTrainWorker.run`, ...) of the Ray worker processes below `root`."""
    titles = {}
    for pid in _below({root}) - {root}:
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith("ray::"):
            titles[pid] = title
    return titles


@contextlib.contextmanager
def ray_process_env(root: int, keys: tuple[str, ...]):
    """While the block runs, the values of `keys` in the environment each Ray worker process
    below `root` (a pid: a driver that started Ray, or a raylet) started with, as
    {kind: [{key: value}, ...]}, a kind being the process's class (`RayTrainWorker`, or
    `ImplicitFunc` for a Tune trial). Polled every 0.2 s: processes living less are missed."""
    seen: dict[int, tuple[str, dict]] = {}
    stop = threading.Event()

    def poll():
        while not stop.wait(0.2):
            for pid, title in _ray_processes_under(root).items():
                kind = title[len("ray::") :].split()[0].split(".")[0]
                if pid in seen:  # a worker started idle takes its task's or actor's title later
                    seen[pid] = (kind if seen[pid][0] == "IDLE" else seen[pid][0], seen[pid][1])
                    continue
                try:
                    raw = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                env = dict(line.split("=", 1) for line in raw.split("\0") if "=" in line)
                seen[pid] = (kind, {k: env[k] for k in keys if k in env})

    found: dict[str, list[dict]] = {}
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield found
    finally:
        stop.set()
        watcher.join()
        for kind, env in seen.values():
            found.setdefault(kind, []).append(env)


def raylet_of(home: Path, timeout: float = 60) -> int:
    """The raylet of the head token_head started in `home` (it may start after the dashboard)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if proc.name.isdigit() and str(home).encode() in cmdline and b"/raylet/raylet" in cmdline:
                return int(proc.name)
        time.sleep(0.5)
    raise AssertionError(f"no raylet under {home}")


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """This process's environment with `values` set, as it was again afterwards (for fixtures
    wider than one test, which monkeypatch cannot serve); processes started inside inherit it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
