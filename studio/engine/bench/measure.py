"""Measuring primitives for the benchmark: a clock that waits for the device, peak memory, the machine.

All functions run on the calling thread. Memory figures are the process's resident set (Linux
``/proc/self/status``); the peak (``VmHWM``) is reset before each measured run by writing ``5`` to
``/proc/self/clear_refs``; where that is not allowed, a sampling thread reads ``VmRSS`` every few
milliseconds instead (``PeakMemory.method`` says which).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass

import torch

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"
SAMPLE_EVERY_S = 0.005


def synchronize(device: str | torch.device) -> None:
    """Wait until queued work on ``device`` is done (CUDA launches are asynchronous; CPU is a no-op)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_clock(device: str | torch.device) -> float:
    """``time.perf_counter()`` after the device has finished its queued work (seconds)."""
    synchronize(device)
    return time.perf_counter()


def _status_kib(field: str) -> int | None:
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def resident_mib() -> float | None:
    """The process's resident set now, MiB (None where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


class PeakMemory:
    """Peak resident memory over a ``with`` block, MiB (``peak_mib``), plus the resident set at the start.

    Use: ``with PeakMemory() as mem: ...; mem.peak_mib``. CUDA peaks are recorded too when the
    device is a GPU (``cuda_peak_mib``).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.method = "none"
        self.start_mib: float | None = None
        self.peak_mib: float | None = None
        self.cuda_peak_mib: float | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._sampled = 0.0

    def __enter__(self) -> PeakMemory:
        self.start_mib = resident_mib()
        try:
            with open(CLEAR_REFS, "w") as f:
                f.write("5")
            self.method = "VmHWM"
        except OSError:
            if self.start_mib is not None:
                self.method = "sampled VmRSS"
                self._sampled = self.start_mib
                self._sampler = threading.Thread(target=self._sample, name="bench-memory", daemon=True)
                self._sampler.start()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            now = resident_mib()
            if now is not None and now > self._sampled:
                self._sampled = now

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            kib = _status_kib("VmHWM")
            self.peak_mib = None if kib is None else kib / 1024.0
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            now = resident_mib()
            self.peak_mib = max(self._sampled, now or 0.0)
        if self.device.type == "cuda":
            self.cuda_peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MachineInfo:
    """What the numbers were measured on (``omp_wait_policy``: the OpenMP env setting, None = active spinning)."""

    torch_version: str
    python_version: str
    cpu: str
    cpu_capability: str
    cores: int
    torch_threads: int
    torch_interop_threads: int
    device: str
    device_name: str
    omp_wait_policy: str | None


    @classmethod
    def probe(cls, device: str) -> MachineInfo:
        dev = torch.device(device)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except AttributeError:  # pragma: no cover - older torch
            capability = "unknown"
        return cls(
            torch_version=torch.__version__,
            python_version=platform.python_version(),
            cpu=cpu_model(),
            cpu_capability=capability,
            cores=usable_cores(),
            torch_threads=torch.get_num_threads(),
            torch_interop_threads=torch.get_num_interop_threads(),
            device=str(dev),
            device_name=name,
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        )
