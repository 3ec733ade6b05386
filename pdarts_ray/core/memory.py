"""Peak memory of one phase of a run (a search stage, a benchmark).

On CUDA: the allocator's peak allocated (and reserved) bytes since the phase began.
On CPU: the process's peak resident set size since the phase began. Linux lets a
process reset its high-water mark (/proc/self/clear_refs, value 5); where that is
not possible, a background thread samples the resident set every 20 ms.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_peak_rss_bytes() -> int:
    """Peak resident set of this process (since start, or the last reset)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """`start()` at the beginning of a phase, `peak()` whenever; `stop()` at its end."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled = 0

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "cpu_peak_rss"

    def start(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        if not _reset_peak_rss():
            self._sampled = current_rss_bytes()
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self._sampled = max(self._sampled, current_rss_bytes())

    def peak(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self._sampler is not None:
            return max(self._sampled, current_rss_bytes())
        return process_peak_rss_bytes()

    def peak_reserved(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_reserved(self.device))
        return None

    def stop(self) -> int:
        peak = self.peak()
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self._sampler = None
        return peak
