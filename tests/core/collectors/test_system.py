"""System sampler: CPU, memory and (fake) GPU figures, fast start/stop, bounded series."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil  # imported here so the sampler thread's first import is warm
import pytest
from fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeNvml,
)

from flowrecord.collectors.system import SystemSampler, _Series

MiB = 2**20


def _run_until(sampler: SystemSampler, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.mark.unit
def test_summary_peaks_and_means_match_the_scripted_gpu_values():
    """Per-GPU peaks and means are exactly those of the values NVML handed out."""
    nvml = FakeNvml(
        [
            FakeGpu(
                name="GPU-A",
                utilization=[10.0, 90.0, 50.0, 30.0],
                memory_used=[1 * MiB, 8 * MiB, 4 * MiB, 2 * MiB],
                power_mw=[100_000, 250_000, 150_000, 120_000],
                processes=[(os.getpid(), 3 * MiB)],
            ),
            FakeGpu(name="GPU-B", utilization=[0.0, 5.0], memory_used=[0, MiB], power_mw=None),
        ]
    )
    sampler = SystemSampler(0.01, nvml=nvml)
    sampler.start()
    _run_until(sampler, lambda: nvml.reads >= 10)
    summary, samples = sampler.stop()

    assert summary["gpu_available"] is True
    assert summary["warnings"] == []
    _run_until(sampler, lambda: nvml.shutdowns == 1)  # NVML is shut down, by the thread
    scripts = {0: nvml.gpus[0], 1: nvml.gpus[1]}
    by_index = {g["index"]: g for g in summary["gpus"]}
    for index in (0, 1):
        # Each sample carries values straight from the script, and the summary's
        # peaks and means are those of the samples (no merging at this length).
        read = [g for s in samples for g in s["gpus"] if g["index"] == index]
        util = [g["utilization_percent"] for g in read]
        used = [g["memory_used_bytes"] for g in read]
        assert set(util) <= set(scripts[index].utilization)
        assert set(used) <= set(scripts[index].memory_used)
        gpu = by_index[index]
        assert gpu["utilization_percent_peak"] == max(util)
        assert gpu["utilization_percent_mean"] == pytest.approx(statistics.fmean(util))
        assert gpu["memory_used_bytes_peak"] == max(used)
        assert gpu["memory_used_bytes_mean"] == round(statistics.fmean(used))
    # At least five samples were read, so every scripted peak was seen.
    assert by_index[0]["utilization_percent_peak"] == 90.0
    assert by_index[0]["memory_used_bytes_peak"] == 8 * MiB
    assert by_index[0]["name"] == "GPU-A" and by_index[1]["name"] == "GPU-B"
    power = [g["power_watts"] for s in samples for g in s["gpus"] if g["index"] == 0]
    assert by_index[0]["power_watts_peak"] == 250.0
    assert by_index[0]["power_watts_mean"] == pytest.approx(statistics.fmean(power))
    assert by_index[0]["process_memory_used_bytes_peak"] == 3 * MiB
    # Power unsupported on GPU-B: None, and no warning about it.
    assert by_index[1]["power_watts_peak"] is None and by_index[1]["power_watts_mean"] is None
    assert by_index[1]["process_memory_used_bytes_peak"] is None
    assert summary["samples"] == len(samples)
    first = samples[0]["gpus"][0]
    assert set(first) >= {
        "index",
        "name",
        "utilization_percent",
        "memory_used_bytes",
        "memory_total_bytes",
        "power_watts",
    }
    assert first["memory_total_bytes"] == 80 * 2**30


@pytest.mark.unit
@pytest.mark.parametrize("code", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_no_nvml_library_or_driver_is_silently_no_gpu(code):
    """nvmlInit failing for lack of a library or driver means no GPU and no warning."""
    sampler = SystemSampler(0.01, nvml=FakeNvml(init_error=code))
    sampler.start()
    assert sampler._ready.wait(10)
    summary, samples = sampler.stop()
    assert summary["gpu_available"] is False
    assert summary["gpus"] == []
    assert summary["warnings"] == []
    assert samples and all(s["gpus"] == [] for s in samples)


@pytest.mark.unit
def test_nvml_failing_to_start_for_another_reason_warns_once():
    """An unexpected nvmlInit error gives no GPU figures and exactly one warning."""
    sampler = SystemSampler(0.01, nvml=FakeNvml(init_error=NVML_ERROR_GPU_IS_LOST))
    sampler.start()
    # Past its start-up even on a loaded machine (stop() gives up on a slow start).
    assert sampler._ready.wait(10)
    summary, _ = sampler.stop()
    assert summary["gpu_available"] is False
    assert len(summary["warnings"]) == 1 and "NVML did not start" in summary["warnings"][0]


@pytest.mark.unit
def test_pynvml_not_installed_is_silently_no_gpu(monkeypatch):
    """Without the pynvml module at all, sampling works and says nothing about GPUs."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    monkeypatch.setattr("flowrecord.collectors.system._nvidia_driver_may_be_present", lambda: True)
    sampler = SystemSampler(0.01)
    sampler.start()
    summary, samples = sampler.stop()
    assert summary["gpu_available"] is False and summary["warnings"] == []
    assert len(samples) >= 1


@pytest.mark.unit
def test_real_pynvml_on_this_machine_never_warns_when_no_gpu():
    """The real nvidia-ml-py: no GPU gives gpu_available False and no warning; a GPU gives figures."""
    sampler = SystemSampler(0.01)
    sampler.start()
    time.sleep(0.05)
    summary, _ = sampler.stop()
    if summary["gpu_available"]:
        assert summary["gpus"] and summary["gpus"][0]["memory_total_bytes"] > 0
    else:
        assert summary["gpus"] == [] and summary["warnings"] == []


@pytest.mark.unit
def test_gpu_failing_mid_run_keeps_what_was_collected_and_warns_once():
    """After NVML breaks, earlier GPU samples stay, GPU polling stops, CPU sampling goes on."""
    nvml = FakeNvml([FakeGpu(utilization=[20.0, 60.0, 40.0])], fail_after=3)
    sampler = SystemSampler(0.01, nvml=nvml)
    sampler.start()
    _run_until(sampler, lambda: nvml.reads >= 3)
    time.sleep(0.1)  # several more samples after the failure
    summary, samples = sampler.stop()

    assert summary["gpu_available"] is True
    warnings = summary["warnings"]
    assert len(warnings) == 1 and "GPU sampling stopped after 3 samples" in warnings[0]
    with_gpu = [s for s in samples if s["gpus"]]
    assert len(with_gpu) == 3
    assert len(samples) > 3  # CPU/memory sampling continued
    assert summary["gpus"][0]["utilization_percent_peak"] == 60.0
    assert summary["gpus"][0]["utilization_percent_mean"] == pytest.approx(40.0)
    assert nvml.reads == 3  # no polling after the failure
    _run_until(sampler, lambda: nvml.shutdowns == 1)


@pytest.mark.unit
def test_start_is_fast_and_stop_is_quick():
    """start() returns in well under 5 ms and stop() in well under a second."""
    starts, stops = [], []
    for _ in range(10):
        sampler = SystemSampler(1.0, nvml=FakeNvml())
        began = time.perf_counter()
        sampler.start()
        starts.append(time.perf_counter() - began)
        time.sleep(0.02)
        began = time.perf_counter()
        sampler.stop()
        stops.append(time.perf_counter() - began)
    assert statistics.median(starts) < 0.005
    assert statistics.median(stops) < 0.2


@pytest.mark.unit
def test_a_one_millisecond_task_gets_a_sample():
    """Even a task that stops at once has at least one sample and a duration."""
    sampler = SystemSampler(1.0, nvml=FakeNvml())
    sampler.start()
    time.sleep(0.001)
    summary, samples = sampler.stop()
    assert summary["samples"] >= 1 and len(samples) >= 1
    assert summary["rss_bytes_peak"] > 0
    assert 0 < summary["duration_s"] < 1.0


@pytest.mark.unit
def test_stop_twice_returns_the_same_result_and_start_twice_raises():
    """stop() is idempotent; a sampler starts once."""
    sampler = SystemSampler(0.05, nvml=FakeNvml())
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    first = sampler.stop()
    assert sampler.stop() is first


@pytest.mark.unit
def test_stop_without_start_warns_instead_of_raising():
    """A sampler stopped before it started returns an empty summary with a warning."""
    summary, samples = SystemSampler(0.05).stop()
    assert summary["samples"] == 0 and samples == ()
    assert summary["warnings"]


@pytest.mark.unit
@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"max_samples": 1}])
def test_bad_arguments_raise_value_error(kwargs):
    """A non-positive interval or a series shorter than 2 is a ValueError."""
    with pytest.raises(ValueError):
        SystemSampler(**kwargs)


@pytest.mark.unit
def test_busy_loop_shows_cpu_use():
    """A CPU-bound task shows a clearly non-zero cpu_percent."""
    sampler = SystemSampler(0.05, nvml=FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    sampler.start()
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        sum(i * i for i in range(1000))
    summary, samples = sampler.stop()
    # Low bars: a shared CI machine may give this process a fraction of a core.
    assert summary["cpu_percent_peak"] > 5
    assert summary["cpu_percent_mean"] > 2
    assert all(s["cpu_percent"] >= 0 for s in samples)


@pytest.mark.unit
def test_idle_task_shows_little_cpu_and_leaves_out_the_sampler_itself():
    """A sleeping task reads near zero CPU: the sampler's own work is not counted."""
    sampler = SystemSampler(0.02, nvml=FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    sampler.start()
    time.sleep(0.3)
    summary, _ = sampler.stop()
    assert summary["cpu_percent_mean"] < 15


_ALLOCATE = (
    "import sys, time\n"
    "block = b'x' * (200 * 2**20)\n"  # written, so the pages are resident
    "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "time.sleep(30)\n"
)


@contextlib.contextmanager
def _allocator() -> Iterator[subprocess.Popen[str]]:
    """A child process holding 200 MB, killed and reaped on exit."""
    child = subprocess.Popen([sys.executable, "-c", _ALLOCATE], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield child
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


@pytest.mark.unit
def test_process_allocating_200_mb_shows_in_rss_peak():
    """Sampling another process by pid sees its 200 MB allocation."""
    with _allocator() as child:
        sampler = SystemSampler(0.02, pid=child.pid, nvml=FakeNvml())
        sampler.start()
        assert sampler._ready.wait(10)
        time.sleep(0.1)
        summary, _ = sampler.stop()
    assert summary["rss_bytes_peak"] > 190 * MiB
    assert summary["warnings"] == []


@pytest.mark.unit
def test_children_memory_counts_toward_the_task():
    """A task's child process (a worker) adds its memory to the task's rss."""
    before = psutil.Process().memory_info().rss
    sampler = SystemSampler(0.02, nvml=FakeNvml())
    sampler.start()
    with _allocator():
        time.sleep(0.2)
        summary, _ = sampler.stop()
    assert summary["rss_bytes_peak"] > before + 150 * MiB


@pytest.mark.unit
def test_watched_process_ending_is_a_warning_not_an_error():
    """When the watched process exits mid-run, samples so far are kept and a warning says why."""
    with _allocator() as child:
        sampler = SystemSampler(0.02, pid=child.pid, nvml=FakeNvml())
        sampler.start()
        assert sampler._ready.wait(10)
        time.sleep(0.1)
    # The context has killed and reaped the child.
    time.sleep(0.1)
    summary, samples = sampler.stop()
    assert len(samples) >= 1
    assert any("can no longer be read" in w for w in summary["warnings"])


@pytest.mark.unit
def test_long_runs_keep_a_bounded_series():
    """Past max_samples the series is merged, never longer than the limit."""
    nvml = FakeNvml([FakeGpu(utilization=[float(i) for i in range(100)])])
    sampler = SystemSampler(0.002, nvml=nvml, max_samples=8)
    sampler.start()
    _run_until(sampler, lambda: nvml.reads >= 40)
    summary, samples = sampler.stop()
    assert len(samples) <= 8
    assert summary["samples"] >= 40
    assert summary["samples_kept"] == len(samples)
    # Peaks come from every sample taken, not from the merged series.
    served = [s["utilization"] for s in nvml.served]
    assert summary["gpus"][0]["utilization_percent_peak"] == max(served)
    times = [s["t"] for s in samples]
    assert times == sorted(times)


def _sample(i: int) -> dict:
    return {
        "t": float(i),
        "cpu_percent": float(i),
        "rss_bytes": 100 - i if i % 2 else i,
        "gpus": [
            {
                "index": 0,
                "name": "g",
                "utilization_percent": float(i),
                "memory_used_bytes": i,
                "memory_total_bytes": 100,
                "power_watts": float(i),
                "process_memory_used_bytes": None,
            }
        ],
    }


@pytest.mark.unit
def test_merged_samples_average_rates_and_keep_memory_maxima():
    """Merging averages CPU, utilisation and power, keeps memory maxima and the first time."""
    series = _Series(4)
    for i in range(8):
        series.add(_sample(i))
    kept = series.samples()
    assert len(kept) <= 4
    # 8 samples into buckets of 2: (0,1), (2,3), (4,5), (6,7).
    assert [s["t"] for s in kept] == [0.0, 2.0, 4.0, 6.0]
    assert [s["cpu_percent"] for s in kept] == [0.5, 2.5, 4.5, 6.5]
    assert [s["rss_bytes"] for s in kept] == [99, 97, 95, 93]
    gpu = [s["gpus"][0] for s in kept]
    assert [g["utilization_percent"] for g in gpu] == [0.5, 2.5, 4.5, 6.5]
    assert [g["memory_used_bytes"] for g in gpu] == [1, 3, 5, 7]
    assert [g["power_watts"] for g in gpu] == [0.5, 2.5, 4.5, 6.5]
    for i in range(8, 1000):
        series.add(_sample(i))
        assert len(series.samples()) <= 4


@pytest.mark.unit
def test_a_process_that_does_not_exist_is_a_warning():
    """Watching a pid that is gone gives an empty summary and a warning, never an exception."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    sampler = SystemSampler(0.02, pid=child.pid, nvml=FakeNvml())
    sampler.start()
    assert sampler._ready.wait(10)
    summary, samples = sampler.stop()
    assert any(f"cannot watch process {child.pid}" in w for w in summary["warnings"])
    # Unknown is not zero: GPU-only samples carry None for the process figures.
    assert summary["rss_bytes_peak"] is None and summary["cpu_percent_peak"] is None
    assert all(s["rss_bytes"] is None and s["cpu_percent"] is None for s in samples)


@pytest.mark.unit
def test_a_short_task_summary_is_what_the_general_path_makes_of_its_reading():
    """The shortcut for a thread-less task gives the figures the series and stats would."""
    sampler = SystemSampler(0.5)
    sampler.start()
    sum(i * i for i in range(20_000))
    summary, samples = sampler.stop()
    (reading,) = samples
    reference = SystemSampler(0.5)
    reference._record(reading)
    assert summary == reference._summary(summary["duration_s"])
    assert samples == reference._series.samples()
    assert type(summary["cpu_percent_mean"]) is float and type(summary["rss_bytes_peak"]) is int


@pytest.mark.unit
def test_a_short_task_opens_no_probe_and_still_gets_a_sample():
    """A task shorter than the open delay costs no /proc scan or NVML start, yet is measured."""
    nvml = FakeNvml([FakeGpu()])
    sampler = SystemSampler(1.0, nvml=nvml)
    sampler.start()
    summary, samples = sampler.stop()
    assert sampler._done.wait(5)
    assert sampler._probe is None and sampler._gpu is None
    assert not nvml.initialized and nvml.shutdowns == 0 and nvml.reads == 0
    assert summary["samples"] == 1 and summary["rss_bytes_peak"] > 0
    assert samples[0]["cpu_percent"] is not None


@pytest.mark.unit
def test_a_child_born_before_the_late_probe_opens_counts_from_birth():
    """CPU of a child started before the probe opened is counted from the child's birth."""
    sampler = SystemSampler(0.5)
    sampler.start()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(5)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        time.sleep(1.6)
        summary, _ = sampler.stop()
    finally:
        child.kill()
        child.wait()
    # The child burnt 0.3 s of CPU right after its birth, mostly before the probe
    # opened (0.2 s in): counted from birth, the first 0.7 s interval shows >= 40%;
    # counted from the probe's opening it would show little of it.
    assert summary["cpu_percent_peak"] > 30


@pytest.mark.unit
def test_short_tasks_start_no_thread_and_a_long_one_still_gets_its_own():
    """Samplers stopped before the open delay never get a thread; one that outlives it does."""
    nvml = FakeNvml([FakeGpu()])
    short = []
    for _ in range(200):  # a pipeline of tiny tasks, back to back
        sampler = SystemSampler(1.0, nvml=nvml)
        sampler.start()
        short.append(sampler)
        sampler.stop()
    long = SystemSampler(0.05, nvml=nvml)
    long.start()
    assert long._ready.wait(10), "the sampler of a long task never got its thread"
    time.sleep(0.15)
    summary, _ = long.stop()
    assert summary["samples"] >= 2 and summary["gpu_available"]
    assert not any(s._launched for s in short)
    assert all(s._done.is_set() for s in short)
    assert nvml.initialized  # by the long task's thread only


@pytest.mark.unit
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_launcher():
    """After a fork (a worker pool, an Airflow task process) the child's long task is still sampled."""
    warm = SystemSampler(0.05)
    warm.start()
    assert warm._ready.wait(10)  # the parent's launcher thread is running
    warm.stop()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its sampler got a thread, then leave
        ok = 0
        try:
            child = SystemSampler(0.05)
            child.start()
            ok = int(child._ready.wait(10))
            child.stop()
        finally:
            os.write(write_end, str(ok).encode())
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 8) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


@pytest.mark.unit
def test_a_sampler_due_sooner_is_not_held_behind_one_due_later(monkeypatch):
    """Samplers with a short interval get their thread on time even behind a longer one."""
    import flowrecord.collectors.system as system

    monkeypatch.setattr(system, "_OPEN_DELAY_S", 5.0)
    slow = SystemSampler(30.0, nvml=FakeNvml())  # due in 5 s
    quick = SystemSampler(0.05, nvml=FakeNvml())  # due in 0.05 s, queued after it
    slow.start()
    quick.start()
    try:
        deadline = time.monotonic() + 4.0
        while not quick._launched and time.monotonic() < deadline:
            time.sleep(0.01)
        assert quick._launched, "the quick sampler waited behind the slow one"
        assert not slow._launched
    finally:
        quick.stop()
        slow.stop()
