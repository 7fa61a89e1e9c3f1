"""Provides the store benchmark: ingest rows/s, incremental tail latency, downsampled series latency at 10k/100k/1M steps.

Run: python tests/bench/store_bench.py [--dir DIR] [--sizes 10000,100000,1000000]
Targets (issue 3): ingest >= 200k rows/s; tail < 5 ms; series at 1M steps < 50 ms.
Prints one line per figure, then one JSON line with all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tuitrain.store import RunWriter, Store  # noqa: E402
from tuitrain.store.writer import write_batch  # noqa: E402

NAMES = ("loss", "lr", "grad_norm", "samples_per_s")


def median_ms(fn, repeat: int) -> float:
    """Median wall time of fn() in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_ingest(store: Store, steps: int, batch_steps: int) -> dict[str, float]:
    """write_batch (one flush = one transaction) and RunWriter end to end, 4 metrics per step."""
    run = store.create_run({}, {})
    t_total = cpu_total = 0.0
    for lo in range(1, steps + 1, batch_steps):
        # What RunWriter hands over per flush: {name: [(step, value, time)]}.
        series = {
            n: [(s, 1.0 / s, 1e9 + s) for s in range(lo, min(lo + batch_steps, steps + 1))]
            for n in NAMES
        }
        t0, c0 = time.perf_counter(), time.process_time()
        write_batch(store.conn, run.id, series, [], heartbeat=True)
        t_total += time.perf_counter() - t0
        cpu_total += time.process_time() - c0
    batch_rps = steps * len(NAMES) / t_total

    run2 = store.create_run({}, {})
    w = RunWriter(store.runs_dir, run2.id, flush_interval=1.0)
    t0 = time.perf_counter()
    for s in range(1, steps + 1):
        w.log(s, {"loss": 1.0 / s, "lr": 1e-3, "grad_norm": 0.5, "samples_per_s": 100.0})
    t_log = time.perf_counter() - t0
    w.close()
    t_all = time.perf_counter() - t0
    assert store.count_points(run2.id) == steps * len(NAMES)
    return {
        "ingest_rows_per_s": batch_rps,
        # CPU time of this process: what one uncontended core gives (the machine may be shared).
        "ingest_rows_per_cpu_s": steps * len(NAMES) / cpu_total,
        "writer_rows_per_s": steps * len(NAMES) / t_all,
        "log_call_us": t_log / steps * 1e6,
    }


def build_run(store: Store, steps: int) -> str:
    """A run with `loss` and `lr` logged at every step 1..steps."""
    run = store.create_run({}, {}, name=f"bench-{steps}")
    chunk = 50_000
    for lo in range(1, steps + 1, chunk):
        hi = min(lo + chunk, steps + 1)
        series = {
            n: [(s, (1.0 / s) * (1 + (s % 7) / 10), 0.0) for s in range(lo, hi)]
            for n in ("loss", "lr")
        }
        write_batch(store.conn, run.id, series, [], heartbeat=True)
    return run.id


def naive_series_ms(store: Store, run_id: str, buckets: int) -> float:
    """The plain GROUP BY scan the rollups replace (for comparison)."""
    sid = store.conn.execute(
        "SELECT id FROM series WHERE run_id = ? AND name = 'loss'", (run_id,)
    ).fetchone()[0]
    lo, hi = store.step_range(run_id)
    w = max(1, (hi - lo + 1) // buckets + 1)
    sql = (
        "SELECT max(step), min(value), max(value) FROM metrics WHERE sid = ?"
        " GROUP BY step / ? ORDER BY 1"
    )
    return median_ms(lambda: store.conn.execute(sql, (sid, w)).fetchall(), 5)


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="runs directory to use (default: a temp dir)")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="run lengths in steps")
    ap.add_argument("--ingest-steps", type=int, default=100_000)
    args = ap.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tuitrain-bench-"))
    store = Store(root)
    load = os.getloadavg()[0]
    print(
        f"store bench in {root} (pid {os.getpid()}, load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    out: dict[str, float] = {"load_avg": load}

    ing = bench_ingest(store, args.ingest_steps, batch_steps=2_500)
    out.update(ing)
    print(
        f"ingest (write_batch, 10k-row flushes): {ing['ingest_rows_per_s']:,.0f} rows/s  (target >= 200,000)"
    )
    print(f"ingest per CPU-second (same run):      {ing['ingest_rows_per_cpu_s']:,.0f} rows/s")
    print(f"ingest (RunWriter log+close):          {ing['writer_rows_per_s']:,.0f} rows/s")
    print(
        f"RunWriter.log() cost on the caller:    {ing['log_call_us']:.2f} us per step (4 metrics)"
    )

    for steps in (int(x) for x in args.sizes.split(",")):
        t0 = time.perf_counter()
        rid = build_run(store, steps)
        build_s = time.perf_counter() - t0
        last = store.last_step(rid)
        tail_ms = median_ms(lambda rid=rid, last=last: store.tail(rid, after_step=last - 10), 200)
        tail_names_ms = median_ms(
            lambda rid=rid, last=last: store.tail(rid, ["loss"], after_step=last - 10), 200
        )
        series_ms = median_ms(lambda rid=rid: store.series(rid, "loss", buckets=200), 30)
        window_ms = median_ms(
            lambda rid=rid, s=steps: store.series(rid, "loss", 200, start=s // 3, end=s // 2), 30
        )
        naive_ms = naive_series_ms(store, rid, 200)
        k = f"{steps // 1000}k" if steps < 1_000_000 else f"{steps // 1_000_000}M"
        out.update({f"tail_ms_{k}": tail_ms, f"tail_one_name_ms_{k}": tail_names_ms,
                    f"series_ms_{k}": series_ms, f"series_window_ms_{k}": window_ms,
                    f"naive_group_by_ms_{k}": naive_ms})  # fmt: skip
        print(
            f"{steps:>9,} steps (built in {build_s:.1f} s): tail {tail_ms:.2f} ms"
            f" (one name {tail_names_ms:.2f} ms), series(200) {series_ms:.2f} ms,"
            f" window series {window_ms:.2f} ms, naive GROUP BY {naive_ms:.1f} ms"
        )
    db_mb = sum(p.stat().st_size for p in root.glob("tuitrain.db*")) / 1e6
    out["db_mb"] = db_mb
    print(f"database size: {db_mb:.1f} MB")
    store.close()
    print(json.dumps({k: round(v, 3) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
