"""Compilation time of every CPU kernel: cold one process, cold with `convbench compile`'s
pool of processes, and warm.

Each measurement is a fresh Python process whose ``NUMBA_CACHE_DIR`` is a new (cold) or an
already filled (warm) directory.  The process imports convbench, then runs every CPU kernel
of convbench (`convbench.compiling.compilable`) on every problem of `convbench.cases` it
supports (the edge cases that reach every code path), forward, in float32 and float64, and
times each algorithm's calls: there Numba compiles (cold) or loads its cache (warm).  With
``--pool`` the process first compiles the same kernels in a pool of processes, one per
usable core (`convbench.compiling.compile_kernels`), so its calls only load.  Run it from the
repository root:

    python benchmarks/compile_time.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = "--child"
POOL = "--pool"


def child(pool: bool) -> None:
    t0 = time.perf_counter()
    from convbench import compiling
    from convbench.spec import DTYPES

    times = {"import": time.perf_counter() - t0}
    if pool:
        times["pool"] = compiling.compile_kernels(directions=("fwd",))
    for algo in compiling.compilable():
        times[algo.name] = sum(compiling.compile_job((algo.name,), dtype, ("fwd",))
                               for dtype in DTYPES)
    print(json.dumps(times))


def measure(cache_dir: str, pool: bool = False) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, CHILD] + [POOL] * pool, env=env,
                         check=True, capture_output=True, text=True, cwd=root).stdout
    times = json.loads(out.strip().splitlines()[-1])
    times["process"] = time.perf_counter() - t0
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="convbench-numba-cache-") as serial, \
            tempfile.TemporaryDirectory(prefix="convbench-numba-cache-") as pooled:
        runs = {"cold": measure(serial), "cold, pool": measure(pooled, pool=True),
                "warm": measure(pooled)}
    keys = list(dict.fromkeys(k for t in runs.values() for k in t))
    print(f"{'seconds':<14}" + "".join(f"{name:>12}" for name in runs))
    for key in keys:
        print(f"{key:<14}" + "".join(f"{t.get(key, float('nan')):12.2f}" for t in runs.values()))


if __name__ == "__main__":
    child(POOL in sys.argv) if CHILD in sys.argv else main()
