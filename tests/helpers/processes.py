"""Ports, process groups, and the Ray processes below a pid and the environment they started with."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def kill_group(proc, stop_local_ray: bool = False) -> None:
    """SIGKILL a process started with start_new_session=True and all its children; with
    `stop_local_ray`, also the local Ray it started (its raylet outlives a killed driver)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if stop_local_ray:
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"], capture_output=True
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_processes_under(root: int) -> dict[int, str]:
    """pid -> title (`ray::RayTrainWorker.run`, ...) of the Ray worker processes below `root`."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            pass
    below, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        below, grew = below | found, bool(found)
    titles = {}
    for pid in below - {root}:
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
