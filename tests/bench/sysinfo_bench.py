"""Benchmark of the system sampler (tuitrain.telemetry.sysinfo): the cost of one sample on this machine and
its share of one core at the trainer's 5 s interval. Prints figures; asserts nothing.

    python tests/bench/sysinfo_bench.py            # a few seconds
    python tests/bench/sysinfo_bench.py --children 4   # with 4 idle child processes in the tree

Target (issue 14): one sample well under 1 ms on CPU (no GPU). With nvidia-ml-py and GPUs the NVML
queries are included (`gpus` in the JSON line says how many were sampled).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S, SystemSampler  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--children", type=int, default=0, help="idle child processes to add")
    args = ap.parse_args()
    kids = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        for _ in range(args.children)
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s = SystemSampler(tmp)
            first = time.perf_counter()
            keys = s.sample()  # opens NVML when present: a one-off cost
            first = time.perf_counter() - first
            times = []
            for _ in range(args.samples):
                t = time.perf_counter()
                s.sample()
                times.append(time.perf_counter() - t)
            s.close()
    finally:
        for k in kids:
            k.kill()
            k.wait()
    times.sort()
    median = statistics.median(times)
    p99 = times[int(0.99 * (len(times) - 1))]
    print(f"{len(keys)} keys per sample, {s.gpus} GPUs; {args.children} extra children")
    print(
        f"first sample {first * 1000:.2f} ms; median {median * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"
    )
    print(json.dumps({
        "sample_ms_median": round(median * 1000, 4),
        "sample_ms_p99": round(p99 * 1000, 4),
        "first_sample_ms": round(first * 1000, 3),
        "core_share_at_interval": round(median / DEFAULT_INTERVAL_S, 8),
        "keys": len(keys),
        "gpus": s.gpus,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
