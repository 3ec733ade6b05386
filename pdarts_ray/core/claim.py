"""One driver per experiment and per run folder: a claim file, created exclusively.

A driver (a sweep or its resume, reproduce, `search`, `search --resume`) claims its target
before it starts anything: a claim file (`<run folder>/.driver.json`; for an experiment,
`<storage>/.claims/<experiment>.json`, outside the folder Ray Tune syncs) is created
exclusively and holds the
holder's command, host, pid, start time and a lease that a background thread renews while
the driver runs. A second driver finds the claim and stops with one line naming the holder.
A claim whose lease has expired (its holder's machine or pod went away, a stopped Ray Job),
or whose holder ran on this host under a pid that is gone (a SIGKILLed driver), is taken
over with a warning; `take_over=True` forces it. The claim is removed when the driver ends.

The files live behind a small interface (`ClaimFiles`): a local folder here; the Ray layer
adds object stores. Locally, creating is `open(O_CREAT | O_EXCL)`, taking over renames the
stale claim away first (one taker wins the rename), and renewing replaces the file after
checking it is still this driver's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol

from .errors import UserError

CLAIM_FILE = ".driver.json"
LEASE_S = 120.0  # a claim not renewed for this long is stale
RENEW_S = 20.0


class ClaimFiles(Protocol):
    """The claim file of one target, with a version that changes on every write."""

    where: str

    def create(self, data: bytes) -> object | None: ...  # the new version, None if the file exists

    def read(self) -> tuple[bytes, object] | None: ...  # (content, version), None if there is none

    def replace(self, version: object, data: bytes) -> object | None: ...  # only if still `version`

    def remove(self, version: object) -> None: ...  # only if still `version`


class LocalClaimFiles:
    """A claim file on a local (or mounted) file system."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.where = str(self.path)
        self.made_folder = False

    def create(self, data: bytes):
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.made_folder = True
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return data

    def read(self):
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, data

    def replace(self, version, data: bytes):
        """Take the file away by renaming it (atomic: one of several racers wins), then check it
        was `version`; if it was not, put it back."""
        aside = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.old")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return None
        if aside.read_bytes() != version:
            try:
                os.link(aside, self.path)  # fails if someone created a new claim meanwhile
            except FileExistsError:
                pass
            aside.unlink()
            return None
        aside.unlink()
        return self.create(data)

    def remove(self, version) -> None:
        current = self.read()
        if current is not None and current[1] == version:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if self.made_folder:  # a driver that stopped before writing anything leaves nothing behind
            try:
                self.path.parent.rmdir()
            except OSError:
                pass


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    return f"{holder.get('command', '?')} ({where}, since {started})"


class Claim:
    """`with Claim(files, "pdarts-ray sweep"):` holds the target for the block's duration."""

    def __init__(
        self,
        files: ClaimFiles,
        command: str,
        take_over: bool = False,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        warn=None,
    ):
        self.files, self.command, self.take_over = files, command, take_over
        self.lease_s, self.renew_s = lease_s, renew_s
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.token = uuid.uuid4().hex
        self.version = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _content(self, started: float) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "command": self.command,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": started,
                "renewed": now,
                "lease_s": self.lease_s,
                "token": self.token,
            },
            indent=1,
        ).encode()

    def stale_reason(self, holder: dict) -> str | None:
        """Why an existing claim may be taken over, or None while it holds."""
        if time.time() > float(holder.get("renewed", 0)) + float(holder.get("lease_s", self.lease_s)):
            return "its lease expired"
        if (
            holder.get("host") == socket.gethostname()
            and isinstance(holder.get("pid"), int)
            and not _alive_here(holder["pid"])
        ):
            return "its process is gone"
        return None

    def acquire(self) -> Claim:
        started = time.time()
        for _ in range(5):
            self.version = self.files.create(self._content(started))
            if self.version is not None:
                break
            current = self.files.read()
            if current is None:
                continue  # released meanwhile: try again
            data, version = current
            try:
                holder = json.loads(data)
                if not isinstance(holder, dict):
                    raise ValueError
            except ValueError:
                holder, reason = {}, "it is unreadable"
            else:
                reason = "forced (--take-over)" if self.take_over else self.stale_reason(holder)
            if reason is None:
                raise UserError(
                    f"{self.files.where}: held by {describe(holder)}; wait for it to end, or pass "
                    f"--take-over if it is gone"
                )
            self.version = self.files.replace(version, self._content(started))
            if self.version is not None:
                self.warn(f"warning: took over {self.files.where} from {describe(holder)}: {reason}")
                break
        else:
            raise UserError(f"{self.files.where}: could not claim it (other drivers keep racing for it)")
        self._started = started
        self._thread = threading.Thread(target=self._renew, daemon=True, name="pdarts-claim")
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            version = self.files.replace(self.version, self._content(self._started))
            if version is None:
                self.lost = True
                self.warn(f"warning: lost the claim on {self.files.where} (taken over by another driver)")
                return
            self.version = version

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost and self.version is not None:
            self.files.remove(self.version)

    def __enter__(self) -> Claim:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def claim_folder(folder: Path, command: str, take_over: bool = False) -> Claim:
    """A claim on a local folder (a search run folder), not yet acquired."""
    return Claim(LocalClaimFiles(Path(folder) / CLAIM_FILE), command, take_over)
