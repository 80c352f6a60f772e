"""CPU seconds and peak RSS of processes over a phase, sampled with psutil.

CPU is the difference of each process's user + system time between the start and the
end of a phase (every thread included). RSS is sampled every `interval` seconds by a
background thread; the phase's peak is the largest sample.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil


@dataclass
class Usage:
    cpu_s: float
    rss_peak_bytes: int


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


class Monitor:
    """Watches named groups of pids (a group: one service, or every load worker)."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.2) -> None:
        self.groups = {name: [psutil.Process(pid) for pid in pids] for name, pids in groups.items()}
        self.interval = interval
        self._cpu0: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss_now(self) -> dict[str, int]:
        return {name: sum(_rss(p) for p in procs) for name, procs in self.groups.items()}

    def _sample(self) -> None:
        for name, rss in self.rss_now().items():
            if rss > self._peak.get(name, 0):
                self._peak[name] = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._cpu0 = {n: sum(_cpu(p) for p in procs) for n, procs in self.groups.items()}
        self._peak = {}
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return {
            name: Usage(
                cpu_s=sum(_cpu(p) for p in procs) - self._cpu0[name],
                rss_peak_bytes=self._peak.get(name, 0),
            )
            for name, procs in self.groups.items()
        }
