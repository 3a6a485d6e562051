"""A scripted stand-in for the pynvml module, for sampler tests on machines without GPUs.

It implements only the functions flowrecord uses, with pynvml's names, argument
and return shapes (structs with ``.gpu``, ``.used``/``.total``; power in
milliwatts; ``NVMLError`` carrying ``.value``). Values come from per-device
scripts, handed out in order (the last one repeats), and every value handed out
is logged so a test can compute the expected peaks and means.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    """Like pynvml.NVMLError: an exception carrying the NVML return code as ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"NVML error {self.value}"


@dataclass
class FakeGpu:
    name: str = "Fake H100"
    memory_total: int = 80 * 2**30
    utilization: list[float] = field(default_factory=lambda: [10.0])
    memory_used: list[int] = field(default_factory=lambda: [2**30])
    power_mw: list[int] | None = field(default_factory=lambda: [100_000])
    """None: the device does not support power readings."""
    processes: list[tuple[int, int]] = field(default_factory=list)
    """(pid, used bytes) of compute processes on this device."""


class FakeNvml:
    """Scripted pynvml: ``init_error`` makes nvmlInit raise; ``fail_after`` breaks reads."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        init_error: int | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.fail_after = fail_after
        """After this many utilisation reads (all devices), every read raises GPU_IS_LOST."""
        self.initialized = False
        self.shutdowns = 0
        self.reads = 0
        self.served: list[dict[str, object]] = []
        """Per utilisation read: the device index and the values served with it."""
        self._lock = threading.Lock()
        self._cursor = [0] * len(self.gpus)

    def _check(self) -> None:
        if not self.initialized:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._check()
        self.initialized = False
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        self._check()
        return SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle: SimpleNamespace) -> str:
        self._check()
        return self.gpus[handle.index].name

    @staticmethod
    def _pick(script: list, cursor: int):
        return script[min(cursor, len(script) - 1)]

    def nvmlDeviceGetUtilizationRates(self, handle: SimpleNamespace) -> SimpleNamespace:
        self._check()
        with self._lock:
            if self.fail_after is not None and self.reads >= self.fail_after:
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
            self.reads += 1
            i = handle.index
            gpu = self.gpus[i]
            cursor = self._cursor[i]
            self._cursor[i] += 1
            served = {
                "index": i,
                "utilization": self._pick(gpu.utilization, cursor),
                "memory_used": self._pick(gpu.memory_used, cursor),
                "power_w": None
                if gpu.power_mw is None
                else self._pick(gpu.power_mw, cursor) / 1000.0,
            }
            self.served.append(served)
            return SimpleNamespace(gpu=served["utilization"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: SimpleNamespace) -> SimpleNamespace:
        self._check()
        gpu = self.gpus[handle.index]
        used = self._pick(gpu.memory_used, self._cursor[handle.index] - 1)
        return SimpleNamespace(total=gpu.memory_total, used=used, free=gpu.memory_total - used)

    def nvmlDeviceGetPowerUsage(self, handle: SimpleNamespace) -> int:
        self._check()
        gpu = self.gpus[handle.index]
        if gpu.power_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self._pick(gpu.power_mw, self._cursor[handle.index] - 1)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: SimpleNamespace) -> list:
        self._check()
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used)
            for pid, used in self.gpus[handle.index].processes
        ]
