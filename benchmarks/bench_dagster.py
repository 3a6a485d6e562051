"""What flowrecord costs a Dagster run: 50 trivial assets, materialised with and without it.

All variants materialise the same 50 independent assets in process, with the
same IO manager (in memory, so storage does not blur the comparison) and the
console logger at WARNING, on a fresh ephemeral instance each time. The
instrumented runs record into a temporary ``FLOWRECORD_HOME`` with the default
settings, then with system sampling off (the per-task sampler thread), then also
without code capture (git and package listing, once per run), to show where the
cost lies. The variants alternate over several rounds after a warm-up and
the medians are compared, so the machine's noise hits all alike; the headline
overhead is the median of each round's with/without ratio, with a 90% bootstrap
interval. Wall time is
what a user waits; process CPU time (every thread, the recorder's background
writer and sampler included) is steadier on a shared machine.

Trivial assets are the worst case: a step that does nothing makes Dagster's
own work per step (~20 ms) the whole run, and flowrecord's fixed cost per task
shows at its largest.

``--quick`` materialises 10 assets for one round; options given explicitly
win. ``--json PATH`` writes the figures for ``run_all.py``.

Run: ``uv run --no-sync python benchmarks/bench_dagster.py [--assets 50] [--rounds 21] [--work-ms 0]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Figure, add_arguments, paired_overhead, report

# Dagster prints every event to the console at DEBUG; no variant should pay for that.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _assets(count: int, work_ms: float = 0.0, *, metadata: bool = False) -> list:
    import dagster as dg

    def make(i: int) -> dg.AssetsDefinition:
        @dg.asset(name=f"trivial_{i:03d}")
        def _trivial(context) -> int:  # context: Dagster passes it by this name
            # --work-ms: the CPU work of a real step (0: the trivial worst case).
            end = time.process_time() + work_ms / 1000
            while time.process_time() < end:
                pass
            if metadata:  # what Dagster itself charges for any output metadata
                context.add_output_metadata({"note": dg.MetadataValue.text("one entry")})
            return i

        return _trivial

    return [make(i) for i in range(count)]


def _run(assets: list, resources: dict) -> tuple[float, float]:
    """Wall and process CPU seconds of one materialisation, its record stored included."""
    import dagster as dg

    import flowrecord

    wall, cpu = time.perf_counter(), time.process_time()
    result = dg.materialize(
        assets, resources=resources, instance=dg.DagsterInstance.ephemeral(), run_config=QUIET
    )
    # The record is part of the cost: what the writer thread has not stored yet
    # when the run returns is waited for here (nothing, without flowrecord).
    flowrecord.flush(30)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not result.success:
        raise SystemExit("a benchmark run failed")
    return wall, cpu


def _settings(sampling: bool, code: bool) -> Callable[[], None]:
    """Switch system sampling and code capture, restarting the recorder when they change."""
    wanted = {
        "FLOWRECORD_SYSTEM_SAMPLING": "1" if sampling else "0",
        "FLOWRECORD_CAPTURE_CODE": "1" if code else "0",
    }

    def switch() -> None:
        from flowrecord import recorder
        from flowrecord.config import reset_config

        if any(os.environ.get(k) != v for k, v in wanted.items()):
            recorder.shutdown()  # the next call starts a runtime with the new settings
            os.environ.update(wanted)
            reset_config()

    return switch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--assets", type=int, help="assets materialised (default 50)")
    parser.add_argument("--rounds", type=int, help="rounds of every variant (default 21)")
    parser.add_argument("--work-ms", type=float, default=0.0, help="CPU work per asset")
    args = parser.parse_args(argv)
    if args.assets is None:
        args.assets = 10 if args.quick else 50
    if args.rounds is None:
        args.rounds = 1 if args.quick else 21

    home = Path(tempfile.mkdtemp(prefix="fr-bench-dagster-"))
    os.environ["FLOWRECORD_HOME"] = str(home)

    import dagster as dg

    import flowrecord
    import flowrecord_dagster

    plain = dg.Definitions(
        assets=_assets(args.assets, args.work_ms), resources={"io_manager": dg.mem_io_manager}
    )
    recorded = flowrecord_dagster.instrument(plain)
    with_fr = ([*recorded.assets, *recorded.asset_checks], dict(recorded.resources))
    annotated = _assets(args.assets, args.work_ms, metadata=True)
    variants: dict[str, tuple[Callable[[], None], list, dict]] = {
        "without flowrecord": (lambda: None, list(plain.assets), dict(plain.resources)),
        "Dagster + 1 metadata": (lambda: None, annotated, dict(plain.resources)),
        "with flowrecord": (_settings(sampling=True, code=True), *with_fr),
        "  sampling off": (_settings(sampling=False, code=True), *with_fr),
        "  + code capture off": (_settings(sampling=False, code=False), *with_fr),
    }
    for prepare, assets, resources in variants.values():  # warm-up: imports, store
        prepare()
        _run(assets, resources)
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (prepare, assets, resources) in variants.items():
            prepare()
            wall, cpu = _run(assets, resources)
            walls[name].append(wall)
            cpus[name].append(cpu)
    flowrecord.shutdown()

    base_wall = statistics.median(walls["without flowrecord"])
    base_cpu = statistics.median(cpus["without flowrecord"])
    kind = "trivial" if not args.work_ms else f"{args.work_ms:g} ms CPU"
    print(
        f"Dagster materialize, {args.assets} {kind} assets, in process, "
        f"median of {args.rounds} rounds"
    )
    print(f"  {'':<20} {'wall s':>8} {'ratio':>7} {'ms/asset':>9}   {'cpu s':>7} {'ratio':>7}")
    for name in variants:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        per_asset = (wall - base_wall) * 1000 / args.assets
        print(
            f"  {name:<20} {wall:8.3f} {wall / base_wall:7.3f} {per_asset:9.2f}"
            f"   {cpu:7.3f} {cpu / base_cpu:7.3f}"
        )
    overhead, low, high = paired_overhead(walls["with flowrecord"], walls["without flowrecord"])
    print(
        f"  flowrecord overhead: {overhead:+.1%} of wall time, median of the rounds' ratios"
        f" (90% interval {low:+.1%} .. {high:+.1%}; goal: < 2%)"
    )
    with_wall = statistics.median(walls["with flowrecord"])
    with_cpu = statistics.median(cpus["with flowrecord"])
    breakdown = ", ".join(
        f"{label} {statistics.median(walls[name]) / base_wall - 1:+.1%}"
        for name, label in (
            ("  sampling off", "with sampling off"),
            ("  + code capture off", "and code capture off"),
        )
    )
    metadata_ms = (statistics.median(cpus["Dagster + 1 metadata"]) - base_cpu) * 1000 / args.assets
    breakdown += (
        f"; for scale, Dagster alone with one output metadata entry per asset: "
        f"{statistics.median(walls['Dagster + 1 metadata']) / base_wall - 1:+.1%} "
        f"({metadata_ms:+.2f} ms CPU per asset)"
    )
    figures = [
        Figure(
            f"Dagster: {kind} assets, wall time",
            with_wall,
            "s",
            alternative=base_wall,
            alternative_name="the same assets without flowrecord",
            goal="< 2% of wall time",
            met=overhead < 0.02,
            note=(
                f"materialize of {args.assets} assets in process, {args.rounds} rounds: "
                f"{overhead:+.1%} (median of the rounds' ratios; 90% interval {low:+.1%} .. "
                f"{high:+.1%}), {(with_wall - base_wall) * 1000 / args.assets:+.2f} ms per "
                f"asset; {breakdown}"
            ),
        ),
        Figure(
            f"Dagster: {kind} assets, CPU time",
            with_cpu,
            "s",
            alternative=base_cpu,
            alternative_name="the same assets without flowrecord",
            note="process CPU, every thread",
        ),
    ]
    report("bench_dagster", figures, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
