"""System sampling: CPU, memory and GPU usage of a task while it runs.

A :class:`SystemSampler` polls the task's process from a daemon thread every
``interval`` seconds and, on :meth:`~SystemSampler.stop`, returns a summary
(peaks and means) and the time series. Everything slow (importing psutil and
pynvml, starting NVML, listing child processes) happens on that thread, so
starting a sampler costs the task a few microseconds and stopping it tens of
microseconds (stop() takes the last sample itself, never waiting for the
thread), and a sampler never raises into the task: problems become
``warnings`` in the summary.

What is measured, and why:

* ``cpu_percent``: CPU time of the process and its live descendants over the
  sample's interval, as a percentage of one core (``top``'s convention, so 400
  means four busy cores). Own-process time comes from ``time.process_time``
  (nanosecond resolution, so even a 1 ms task gets a meaningful figure); the
  sampler's own thread is part of the process and is included (well under 1%).
  A child that exits between two samples loses its CPU time of that interval.
* ``rss_bytes``: resident memory of the process **plus its live descendants**
  (DataLoader workers, multiprocessing pools, subprocesses are part of what a
  task needs). Pages shared between them (after ``fork``) are counted once per
  process, so this is an upper bound: the safe side for sizing a machine.
  Both are None in a sample taken when the process could not be read (it ended,
  or belongs to another user): unknown is not idle.
* ``gpus``: every GPU NVML can see (NVML ignores ``CUDA_VISIBLE_DEVICES``;
  schedulers that isolate GPUs with cgroups show only the task's). Device-wide
  utilisation, memory and power; ``process_memory_used_bytes`` is the memory of
  the task's own processes on that GPU when NVML can tell (it cannot across PID
  namespaces, e.g. in many containers: then it is None).

Without NVML (no ``nvidia-ml-py``, no driver, no GPU) the summary says
``gpu_available: False`` and nothing more. If NVML fails mid-run, the samples
taken so far are kept, GPU polling stops, and one warning says so.

The series is bounded: past ``max_samples`` neighbouring samples are merged two
into one (rates such as CPU, utilisation and power averaged; memory levels kept
at their maximum, so the series never hides a peak), and the interval each kept
sample covers doubles. Peaks and means in the summary are computed over every
sample taken, not over the merged series.
"""

from __future__ import annotations

import _thread
import contextlib
import math
import os
import threading
import time
from typing import Any

__all__ = ["SystemSampler", "gpu_smoke"]

# Listing descendants scans /proc and grows with the number of processes on the
# host; it is done less often when its CPU time would exceed this share of the
# sampling interval. The final sample is taken by stop(), on the task's own
# thread, and rescans only when a scan is cheaper than _FINAL_SCAN_MAX_S: a
# task's end must not cost it milliseconds (a busy host's scan takes several).
_CHILD_SCAN_BUDGET = 0.02
_FINAL_SCAN_MAX_S = 0.0002
# Clock ticks and /proc/uptime resolution: a child born this close before a
# reference time may have been born just after it.
_BIRTH_SLACK_S = 0.02
# A sampler of this process gets its thread, which opens the probes (psutil,
# NVML), only once the task has run this long (or one interval, if shorter).
_OPEN_DELAY_S = 0.2
# How long stop() waits for the sampler thread to finish a sample it is taking.
_PROBE_WAIT_S = 0.005
# NVML error codes (pynvml's NVML_ERROR_*), used when the module lacks the names.
_NVML_NOT_SUPPORTED = 3
_NVML_NO_PERMISSION = 4
_NVML_DRIVER_NOT_LOADED = 9
_NVML_LIBRARY_NOT_FOUND = 12


# ---------------------------------------------------------------------- processes


def _create_time_offset(psutil: Any) -> float:
    """How far psutil's process creation times run ahead of ``time.time()``.

    On Linux they are the boot time, which the kernel gives in whole seconds, plus
    the process's start in clock ticks: off by up to a second, the same for every
    process. Comparing a creation time with a wall time needs this correction.
    """
    try:
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return float(psutil.boot_time()) + uptime - time.time()
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class _ProcessProbe:
    """CPU and resident memory of one process and its descendants."""

    def __init__(
        self,
        psutil: Any,
        pid: int,
        interval: float,
        cpu_start: tuple[float, float] | None,
        since_wall: float | None = None,
    ) -> None:
        self._psutil = psutil
        self.pid = pid
        self._own = pid == os.getpid()
        self._proc = psutil.Process(pid)
        self._interval = interval
        # For our own process the baseline (CPU seconds, monotonic time) was taken
        # in start(), on the caller's thread: the first sample covers the task
        # from its very beginning.
        if self._own and cpu_start is not None:
            self._last_cpu, self._last_t = cpu_start
        else:
            self._last_cpu, self._last_t = self._cpu(), time.monotonic()
        # CPU the sampler thread itself has used (its imports, /proc reads), left
        # out of our own process's figure: it is flowrecord's cost, not the task's.
        self._last_overhead = 0.0
        # Children born after this wall time count from birth: the task's start,
        # when the probe is opened later than that.
        self._last_wall = since_wall if since_wall is not None else time.time()
        self._clock_offset = _create_time_offset(psutil)
        # Descendants: pid -> (process, CPU seconds at the previous sample).
        self._children: dict[int, tuple[Any, float]] = {}
        self._scan_cost = 0.0
        self._scan_every = 1
        self._since_scan = 0
        self.lock = threading.Lock()
        self._scan_children()

    def _cpu(self) -> float:
        if self._own:
            return time.process_time()
        times = self._proc.cpu_times()
        return float(times.user + times.system)

    def _scan_children(self) -> None:
        # CPU time, not wall time: waiting for the GIL held by a busy task costs
        # the task nothing, and would make the scan look expensive.
        started = time.thread_time()
        try:
            found = self._proc.children(recursive=True)
        except self._psutil.Error:
            found = []
        self._scan_cost = time.thread_time() - started
        self._scan_every = max(
            1, math.ceil(self._scan_cost / (_CHILD_SCAN_BUDGET * self._interval))
        )
        self._since_scan = 0
        known = self._children
        fresh: dict[int, tuple[Any, float]] = {}
        for child in found:
            if child.pid in known:
                fresh[child.pid] = known[child.pid]
                continue
            try:
                times = child.cpu_times()
                total = float(times.user + times.system)
                # Born since the last sample: all its CPU time belongs to this
                # interval. Older (found late, scans being spaced out): from now.
                born = child.create_time() - self._clock_offset
                baseline = 0.0 if born >= self._last_wall - _BIRTH_SLACK_S else total
            except self._psutil.Error:
                continue
            fresh[child.pid] = (child, baseline)
        self._children = fresh

    def child_pids(self) -> set[int]:
        return set(self._children)

    def read(self, *, final: bool = False, overhead: float | None = None) -> tuple[float, int]:
        """CPU percent since the previous read and resident bytes, all descendants included.

        ``overhead`` is the sampler thread's CPU time so far (``time.thread_time()``
        read on that thread), or None when read from another thread.
        """
        self._since_scan += 1
        # The final sample always rescans when that is cheap (children started
        # late are seen) and never when it is not: stop() must stay quick.
        due = self._since_scan >= self._scan_every
        if (due and not final) or (final and self._scan_cost < _FINAL_SCAN_MAX_S):
            self._scan_children()
        now = time.monotonic()
        cpu = self._cpu()
        rss = int(self._proc.memory_info().rss)
        used = cpu - self._last_cpu
        self._last_cpu = cpu
        if self._own and overhead is not None:
            used -= overhead - self._last_overhead
            self._last_overhead = overhead
        for pid, (child, last) in list(self._children.items()):
            try:
                times = child.cpu_times()
                total = float(times.user + times.system)
                rss += int(child.memory_info().rss)
            except self._psutil.Error:
                del self._children[pid]  # it ended; its last interval is lost
                continue
            used += max(0.0, total - last)
            self._children[pid] = (child, total)
        elapsed = now - self._last_t
        self._last_t = now
        self._last_wall = time.time()
        percent = 100.0 * used / elapsed if elapsed > 0 else 0.0
        return max(0.0, percent), rss


# --------------------------------------------------------------------------- GPUs


# The small record classes below are written out rather than made with
# @dataclass: every task process imports this module, and each dataclass costs
# about half a millisecond of generated code at import.


class _Device:
    __slots__ = ("handle", "index", "name", "power_ok", "processes_ok")

    def __init__(self, index: int, name: str, handle: Any) -> None:
        self.index = index
        self.name = name
        self.handle = handle
        self.power_ok = True
        self.processes_ok = True


class _GpuProbe:
    """Reads each GPU through the pynvml API; any unexpected error propagates."""

    def __init__(self, nvml: Any, devices: list[_Device]) -> None:
        self.nvml = nvml
        self.devices = devices
        error = getattr(nvml, "NVMLError", None)
        self._error: type[BaseException] = error if isinstance(error, type) else Exception
        self._optional_codes = {
            getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", _NVML_NOT_SUPPORTED),
            getattr(nvml, "NVML_ERROR_NO_PERMISSION", _NVML_NO_PERMISSION),
        }

    def read(self, pids: set[int]) -> list[dict[str, Any]]:
        nvml = self.nvml
        out = []
        for dev in self.devices:
            util = nvml.nvmlDeviceGetUtilizationRates(dev.handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(dev.handle)
            power = None
            if dev.power_ok:
                try:
                    power = nvml.nvmlDeviceGetPowerUsage(dev.handle) / 1000.0  # milliwatts
                except self._error as exc:
                    if getattr(exc, "value", None) not in self._optional_codes:
                        raise
                    dev.power_ok = False  # not supported here: stop asking
            out.append(
                {
                    "index": dev.index,
                    "name": dev.name,
                    "utilization_percent": float(util.gpu),
                    "memory_used_bytes": int(memory.used),
                    "memory_total_bytes": int(memory.total),
                    "power_watts": power,
                    "process_memory_used_bytes": self._process_memory(dev, pids),
                }
            )
        return out

    def _process_memory(self, dev: _Device, pids: set[int]) -> int | None:
        if not dev.processes_ok:
            return None
        try:
            processes = self.nvml.nvmlDeviceGetComputeRunningProcesses(dev.handle)
        except Exception:
            # Optional figure: older drivers, MIG or permissions; the device-wide
            # numbers are still good, so only this one is given up.
            dev.processes_ok = False
            return None
        used = [p.usedGpuMemory for p in processes if p.pid in pids]
        if not used:
            # Not on this GPU, or its PIDs are from another namespace: unknown.
            return None
        return int(sum(u for u in used if u is not None))

    def close(self) -> None:
        # Shutting down is best effort: nothing collected depends on it.
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def _nvidia_driver_may_be_present() -> bool:
    """False only where the NVIDIA driver is surely absent (Linux without its files)."""
    if not os.path.isdir("/proc"):
        return True  # not Linux: let NVML decide
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")


# ------------------------------------------------------------------------- series


class _GpuBucket:
    __slots__ = (
        "memory_total",
        "memory_used_max",
        "name",
        "power_n",
        "power_sum",
        "process_memory_max",
        "utilization_sum",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.utilization_sum = 0.0
        self.memory_used_max = 0
        self.memory_total = 0
        self.power_sum = 0.0
        self.power_n = 0
        self.process_memory_max: int | None = None


class _Bucket:
    """One kept sample: the merge of ``n`` consecutive samples."""

    __slots__ = ("cpu_n", "cpu_sum", "gpu_n", "gpus", "n", "rss_max", "t")

    def __init__(self, t: float) -> None:
        self.t = t
        self.n = 0
        self.cpu_sum = 0.0
        self.cpu_n = 0
        self.rss_max: int | None = None
        self.gpu_n = 0
        self.gpus: dict[int, _GpuBucket] = {}

    def add(self, sample: dict[str, Any]) -> None:
        self.n += 1
        if sample["cpu_percent"] is not None:
            self.cpu_sum += sample["cpu_percent"]
            self.cpu_n += 1
        self.rss_max = _max_opt(self.rss_max, sample["rss_bytes"])
        gpus = sample["gpus"]
        if gpus:
            self.gpu_n += 1
        for g in gpus:
            mine = self.gpus.setdefault(g["index"], _GpuBucket(g["name"]))
            mine.utilization_sum += g["utilization_percent"]
            mine.memory_used_max = max(mine.memory_used_max, g["memory_used_bytes"])
            mine.memory_total = g["memory_total_bytes"]
            if g["power_watts"] is not None:
                mine.power_sum += g["power_watts"]
                mine.power_n += 1
            mine.process_memory_max = _max_opt(
                mine.process_memory_max, g["process_memory_used_bytes"]
            )

    def absorb(self, other: _Bucket) -> None:
        self.n += other.n
        self.cpu_sum += other.cpu_sum
        self.cpu_n += other.cpu_n
        self.rss_max = _max_opt(self.rss_max, other.rss_max)
        for index, g in other.gpus.items():
            mine = self.gpus.setdefault(index, _GpuBucket(g.name))
            mine.utilization_sum += g.utilization_sum
            mine.memory_used_max = max(mine.memory_used_max, g.memory_used_max)
            mine.memory_total = g.memory_total
            mine.power_sum += g.power_sum
            mine.power_n += g.power_n
            mine.process_memory_max = _max_opt(mine.process_memory_max, g.process_memory_max)
        self.gpu_n += other.gpu_n

    def as_sample(self) -> dict[str, Any]:
        gpus = [
            {
                "index": index,
                "name": g.name,
                "utilization_percent": g.utilization_sum / self.gpu_n if self.gpu_n else 0.0,
                "memory_used_bytes": g.memory_used_max,
                "memory_total_bytes": g.memory_total,
                "power_watts": g.power_sum / g.power_n if g.power_n else None,
                "process_memory_used_bytes": g.process_memory_max,
            }
            for index, g in sorted(self.gpus.items())
        ]
        return {
            "t": self.t,
            "cpu_percent": self.cpu_sum / self.cpu_n if self.cpu_n else None,
            "rss_bytes": self.rss_max,
            "gpus": gpus,
        }


def _max_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class _Series:
    """The kept time series, never longer than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[_Bucket] = []
        self.stride = 1
        self.pending: _Bucket | None = None

    def add(self, sample: dict[str, Any]) -> None:
        if self.pending is None:
            # Merge only when a sample finds no room: the series then stays
            # between half full and full, never over.
            if len(self.kept) >= self.limit:
                self._halve()
            self.pending = _Bucket(t=sample["t"])
        self.pending.add(sample)
        if self.pending.n >= self.stride:
            self.kept.append(self.pending)
            self.pending = None

    def _halve(self) -> None:
        merged = []
        for i in range(0, len(self.kept) - 1, 2):
            first = self.kept[i]
            first.absorb(self.kept[i + 1])
            merged.append(first)
        if len(self.kept) % 2:
            merged.append(self.kept[-1])
        self.kept = merged
        self.stride *= 2

    def samples(self) -> tuple[dict[str, Any], ...]:
        buckets = self.kept + ([self.pending] if self.pending is not None else [])
        return tuple(b.as_sample() for b in buckets)


class _Stat:
    __slots__ = ("n", "peak", "total")

    def __init__(self) -> None:
        self.peak: float | None = None
        self.total = 0.0
        self.n = 0

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.peak = value if self.peak is None else max(self.peak, value)
        self.total += value
        self.n += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class _GpuStats:
    __slots__ = ("memory", "memory_total", "name", "power", "process_memory", "utilization")

    def __init__(self, name: str) -> None:
        self.name = name
        self.utilization = _Stat()
        self.memory = _Stat()
        self.power = _Stat()
        self.process_memory = _Stat()
        self.memory_total = 0

    def as_summary(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "name": self.name,
            "utilization_percent_peak": self.utilization.peak,
            "utilization_percent_mean": self.utilization.mean,
            "memory_used_bytes_peak": _int(self.memory.peak),
            "memory_used_bytes_mean": _int(self.memory.mean),
            "memory_total_bytes": self.memory_total,
            "power_watts_peak": self.power.peak,
            "power_watts_mean": self.power.mean,
            "process_memory_used_bytes_peak": _int(self.process_memory.peak),
        }


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


# ------------------------------------------------------------------------ sampler


class SystemSampler:
    """Samples CPU, memory and GPU usage of a process in a background thread.

    :param interval: seconds between samples.
    :param pid: process to watch (with its descendants); the current one if None.
    :param nvml: a module with the pynvml API; None imports ``pynvml`` (package
        ``nvidia-ml-py``) lazily, in the sampler thread.
    :param max_samples: longest time series kept; older samples are merged.
    :raises ValueError: ``interval`` is not positive or ``max_samples`` < 2.

    >>> sampler = SystemSampler(interval=0.5)
    >>> sampler.start()
    >>> total = sum(i * i for i in range(10_000))  # the task's work
    >>> summary, samples = sampler.stop()
    >>> summary["samples"] >= 1 and len(samples) >= 1
    True
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        pid: int | None = None,
        nvml: object | None = None,
        max_samples: int = 3600,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, not {max_samples!r}")
        self._interval = float(interval)
        self._pid = pid
        self._nvml = nvml
        self._stop = threading.Event()
        self._ready = threading.Event()  # set once the thread has opened its probes
        self._lock = threading.Lock()
        self._started = False
        self._launched = False  # its thread was started (see _Launcher)
        self._done = threading.Event()
        self._abandoned = False
        self._result: tuple[dict[str, Any], tuple[dict[str, Any], ...]] | None = None
        self._started_mono = 0.0
        self._started_wall: float | None = None
        self._cpu_start: float | None = None
        self._probe: _ProcessProbe | None = None
        self._gpu: _GpuProbe | None = None
        self._gpu_seen = False
        self._warnings: list[str] = []
        self._series = _Series(max_samples)
        self._n = 0
        self._cpu = _Stat()
        self._rss = _Stat()
        self._gpu_stats: dict[int, _GpuStats] = {}

    # The caller's side: both methods must stay cheap and never raise into a task.

    def start(self) -> None:
        """Start sampling in a daemon thread; returns in microseconds.

        :raises RuntimeError: the sampler was already started.
        """
        if self._started:
            raise RuntimeError("this SystemSampler was already started")
        self._started = True
        if self._pid is None:
            self._pid = os.getpid()
        self._started_mono = time.monotonic()
        self._started_wall = time.time()
        if self._pid == os.getpid():
            self._cpu_start = time.process_time()
            # A task of this process gets its thread only if it lives long enough
            # for sampling to matter: most tasks of a busy pipeline are over
            # before that, and a thread per task (created, woken, ended) costs
            # the task's own thread a share of the GIL each time.
            _LAUNCHER.defer(self, self._started_mono + min(self._interval, _OPEN_DELAY_S))
        else:
            self._launch()

    def _launch(self) -> bool:
        """Start the sampler thread, unless stop() came first; True if started."""
        with self._lock:
            if self._abandoned:
                return False
            self._launched = True
        # The low-level thread API on purpose: threading.Thread.start() waits for
        # the new thread to run, and then for the GIL it holds (up to the 5 ms
        # switch interval); start_new_thread returns at once. Threads started
        # this way are daemons: they never hold up interpreter exit.
        _thread.start_new_thread(self._run, ())
        return True

    def stop(self) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
        """Take a final sample, stop the thread and return ``(summary, samples)``.

        The final sample is taken here, without waiting for the thread (which
        ends on its own, shutting NVML down): CPU and memory of the process and
        of the descendants already seen, and no GPU reading, so stopping costs
        tens of microseconds. Calling it again returns the same result. The summary holds
        ``cpu_percent_peak/mean``, ``rss_bytes_peak/mean``, ``samples`` (how many
        were taken), ``samples_kept``, ``duration_s``, ``gpu_available``, ``gpus``
        (per GPU peaks and means) and ``warnings``.
        """
        if self._result is not None:
            return self._result
        if not self._started:
            self._warn("the sampler was stopped without being started")
        else:
            with self._lock:
                self._abandoned = True  # the thread takes no sample from now on
                launched = self._launched
            self._stop.set()
            if not launched:
                self._done.set()  # no thread ever ran, and none will
                if self._n == 0 and self._pid == os.getpid() and self._cpu_start is not None:
                    # A short task of this process (most of them): its one reading,
                    # summarised directly; the same figures as the general way below.
                    self._result = self._single_reading()
                    return self._result
            self._final_sample()
        duration = time.monotonic() - self._started_mono if self._started else 0.0
        with self._lock:
            self._result = (self._summary(duration), self._series.samples())
        return self._result

    # The sampler thread.

    def _run(self) -> None:
        try:
            # A task that ended before this thread ran needs nothing opened. A
            # task of our own process gets here only after the open delay (the
            # launcher waited it out): scanning for child processes and starting
            # NVML cost milliseconds of CPU, and a shorter task gets its figures
            # from stop() alone (another process's figures need the probe).
            if self._stop.is_set():
                return
            self._open_process()
            if self._stop.is_set():
                return
            self._open_gpus()
            self._ready.set()
            while True:
                stopping = self._stop.wait(self._interval)
                with self._lock:
                    if self._abandoned:
                        break
                self._sample(final=stopping)
                if stopping:
                    break
        except Exception as exc:  # never let the thread die with a traceback in a task
            self._warn(f"system sampling stopped: {type(exc).__name__}: {exc}")
        finally:
            if self._gpu is not None:
                self._gpu.close()
            self._done.set()

    def _open_process(self) -> None:
        try:
            import psutil  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            self._warn("psutil is not installed: no CPU or memory figures")
            return
        try:
            baseline = None
            if self._cpu_start is not None:
                baseline = (self._cpu_start, self._started_mono)
            probe = _ProcessProbe(
                psutil, self._pid or os.getpid(), self._interval, baseline, self._started_wall
            )
        except psutil.Error as exc:
            self._warn(f"cannot watch process {self._pid}: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._probe = probe

    def _open_gpus(self) -> None:
        nvml: Any = self._nvml
        if nvml is None:
            if not _nvidia_driver_may_be_present():
                return  # importing pynvml costs ~100 ms of CPU; no driver, no GPU
            try:
                import pynvml as nvml  # type: ignore[import-untyped, no-redef, unused-ignore]
            except ImportError:
                return  # nvidia-ml-py not installed: no GPU, nothing to say
        try:
            nvml.nvmlInit()
        except Exception as exc:
            if getattr(exc, "value", None) not in (
                getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", _NVML_LIBRARY_NOT_FOUND),
                getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", _NVML_DRIVER_NOT_LOADED),
            ):
                self._warn(f"NVML did not start: {type(exc).__name__}: {exc}")
            return  # no library or no driver: a machine without GPUs, say nothing
        try:
            devices = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                if isinstance(name, bytes):  # older nvidia-ml-py returned bytes
                    name = name.decode("utf-8", "replace")
                devices.append(_Device(index, str(name), handle))
        except Exception as exc:
            self._warn(f"NVML could not list GPUs: {type(exc).__name__}: {exc}")
            devices = []
        probe = _GpuProbe(nvml, devices)
        if not devices:
            probe.close()
            return
        with self._lock:
            if self._abandoned:
                probe.close()
                return
            self._gpu = probe

    def _sample(self, *, final: bool) -> None:
        t = time.time()
        # None, not 0, when the process cannot be read: unknown is not idle.
        cpu: float | None = None
        rss: int | None = None
        pids: set[int] = set()
        probe = self._probe
        if probe is not None:
            with probe.lock:
                try:
                    cpu, rss = probe.read(final=final, overhead=time.thread_time())
                    pids = probe.child_pids() | {probe.pid}
                except Exception as exc:
                    self._warn(f"process {probe.pid} can no longer be read: {exc}")
                    self._probe = None
        gpus: list[dict[str, Any]] = []
        if self._gpu is not None:
            try:
                gpus = self._gpu.read(pids)
            except Exception as exc:
                self._warn(
                    f"GPU sampling stopped after {self._n} samples: {type(exc).__name__}: {exc}"
                )
                self._gpu.close()
                self._gpu = None
                gpus = []
        if probe is None and not gpus:
            return
        self._record({"t": t, "cpu_percent": cpu, "rss_bytes": rss, "gpus": gpus})

    def _record(self, sample: dict[str, Any]) -> None:
        with self._lock:
            if self._result is not None:
                return  # stop() already answered; a late sample changes nothing
            self._n += 1
            self._cpu.add(sample["cpu_percent"])
            self._rss.add(sample["rss_bytes"])
            for g in sample["gpus"]:
                self._gpu_seen = True
                stats = self._gpu_stats.setdefault(g["index"], _GpuStats(g["name"]))
                stats.utilization.add(g["utilization_percent"])
                stats.memory.add(g["memory_used_bytes"])
                stats.memory_total = g["memory_total_bytes"]
                stats.power.add(g["power_watts"])
                stats.process_memory.add(g["process_memory_used_bytes"])
            self._series.add(sample)

    def _final_sample(self) -> None:
        # On the caller's thread, without GPUs: the thread may still be starting
        # (importing psutil or pynvml, starting NVML) or in a driver call, and
        # waiting for it would cost the task milliseconds.
        probe = self._probe
        if probe is not None and probe.lock.acquire(timeout=_PROBE_WAIT_S):
            try:
                cpu, rss = probe.read(final=True)
            except Exception as exc:
                self._warn(f"process {probe.pid} can no longer be read: {exc}")
                return
            finally:
                probe.lock.release()
        elif self._pid == os.getpid() and self._cpu_start is not None:
            cpu, rss = self._own_usage()
        else:
            if self._n == 0:
                self._warn("no sample: the sampler was still starting when stopped")
            return
        self._record({"t": time.time(), "cpu_percent": cpu, "rss_bytes": rss, "gpus": []})

    def _single_reading(self) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
        now = time.time()
        duration = time.monotonic() - self._started_mono
        cpu, rss = self._own_usage()
        with self._lock:
            warnings = list(self._warnings)
        summary = {
            "cpu_percent_peak": cpu,
            "cpu_percent_mean": cpu + 0.0,
            "rss_bytes_peak": rss,
            "rss_bytes_mean": rss,
            "samples": 1,
            "samples_kept": 1,
            "duration_s": duration,
            "interval_s": self._interval,
            "gpu_available": False,
            "gpus": [],
            "warnings": warnings,
        }
        return summary, ({"t": now, "cpu_percent": cpu, "rss_bytes": rss, "gpus": []},)

    def _own_usage(self) -> tuple[float, int]:
        """This process's CPU percent since start() and resident memory, without psutil."""
        elapsed = time.monotonic() - self._started_mono
        used = time.process_time() - (self._cpu_start or 0.0)
        cpu = 100.0 * used / elapsed if elapsed > 0 else 0.0
        rss = 0
        try:
            rss = int(os.pread(_statm_fd(), 128, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError, AttributeError):
            try:
                import resource

                # Peak rather than current, and in KiB on Linux but bytes on macOS.
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                rss = peak if os.uname().sysname == "Darwin" else peak * 1024
            except (ImportError, OSError):
                rss = 0
        return max(0.0, cpu), rss

    def _warn(self, message: str) -> None:
        with self._lock:
            if message not in self._warnings:
                self._warnings.append(message)

    def _summary(self, duration: float) -> dict[str, Any]:
        return {
            "cpu_percent_peak": self._cpu.peak,
            "cpu_percent_mean": self._cpu.mean,
            "rss_bytes_peak": _int(self._rss.peak),
            "rss_bytes_mean": _int(self._rss.mean),
            "samples": self._n,
            "samples_kept": len(self._series.kept) + (self._series.pending is not None),
            "duration_s": duration,
            "interval_s": self._interval,
            "gpu_available": self._gpu_seen,
            "gpus": [s.as_summary(i) for i, s in sorted(self._gpu_stats.items())],
            "warnings": list(self._warnings),
        }


class _Launcher:
    """One thread per process that starts a sampler's thread once its task has run long enough.

    :meth:`defer` costs the task an append under an uncontended lock (and a
    wake-up only when the launcher would otherwise sleep past the new due
    time). Samplers stopped before their time are dropped unseen: a pipeline
    of short tasks starts no thread per task at all.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            # The thread does not survive a fork, and its lock may be held at
            # the moment of one: the child starts afresh.
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[float, SystemSampler]] = []
        self._running = False
        # When the launcher wakes next on its own (inf: not before a defer).
        self._wake_at = math.inf

    def defer(self, sampler: SystemSampler, due: float) -> None:
        with self._cond:
            self._queue.append((due, sampler))
            if not self._running:
                self._running = True
                _thread.start_new_thread(self._loop, ())
            elif due < self._wake_at:
                self._wake_at = due
                self._cond.notify()

    def _loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                # Drop every sampler already stopped; find the one due first.
                queue = self._queue = [e for e in self._queue if not e[1]._stop.is_set()]
                if not queue:
                    self._wake_at = math.inf
                    cond.wait()
                    continue
                first = min(range(len(queue)), key=lambda k: queue[k][0])
                due, sampler = queue[first]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake_at = due
                    cond.wait(wait)
                    continue
                del queue[first]
            try:
                sampler._launch()
            except Exception as exc:  # no thread to be had: the task keeps stop()'s sample
                sampler._warn(f"could not start the sampler thread: {exc}")


_LAUNCHER = _Launcher()

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: tuple[int, int] | None = None  # (pid, fd) of this process's /proc/<pid>/statm


def _statm_fd() -> int:
    """A descriptor of /proc/<pid>/statm kept open: opening it is most of a read's cost.

    :raises OSError: there is no such file (not Linux).
    """
    global _statm
    pid = os.getpid()
    if _statm is None or _statm[0] != pid:  # a forked child must read its own
        _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
    return _statm[1]


def gpu_smoke(seconds: float = 2.0, interval: float = 0.2) -> dict[str, Any]:
    """Sample this process for ``seconds`` and print the summary as JSON.

    A quick check on a real machine: ``python -m flowrecord.collectors.system``.
    """
    import json

    sampler = SystemSampler(interval)
    sampler.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(i * i for i in range(10_000))  # keep a core a little busy
    summary, samples = sampler.stop()
    print(
        json.dumps({"summary": summary, "last_sample": samples[-1] if samples else None}, indent=2)
    )
    return summary


if __name__ == "__main__":
    gpu_smoke()
