"""Compilation time of every CPU kernel, with a cold and with a warm Numba cache.

Each measurement is a fresh Python process whose ``NUMBA_CACHE_DIR`` is a new (cold) or the
same, already filled (warm) directory.  The process imports convbench, then prepares and runs
every CPU registry entry on every named kernel test case (tests/cases.py: the edge cases that
reach every code path) in float32 and float64, and times each entry's first calls: those are
where Numba compiles (cold) or loads its cache (warm).  Run it from the repository root:

    python benchmarks/compile_time.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

CHILD = "--child"


def child() -> None:
    t0 = time.perf_counter()
    import numpy as np

    from convbench import registry
    from tests.cases import CASES, random_arrays, separable_weights

    times = {"import": time.perf_counter() - t0}
    for algo in registry.algorithms("cpu"):
        if algo.family == "baseline":
            continue
        start = time.perf_counter()
        for spec in CASES.values():
            for dtype in ("float32", "float64"):
                s = replace(spec, dtype=dtype) if spec.dtype != dtype else spec
                if algo.supports(s) is not None:
                    continue
                x, w = random_arrays(s)
                if algo.operator == "separable":
                    w = separable_weights(s)
                algo.prepare(w, s)(x, np.empty(s.output_shape, s.dtype))
        times[algo.name] = time.perf_counter() - start
    print(json.dumps(times))


def measure(cache_dir: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, CHILD], env=env, check=True,
                         capture_output=True, text=True, cwd=root).stdout
    times = json.loads(out.strip().splitlines()[-1])
    times["process"] = time.perf_counter() - t0
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="convbench-numba-cache-") as cache:
        cold = measure(cache)
        warm = measure(cache)
    print(f"{'':<14} {'cold s':>8} {'warm s':>8}")
    for key in cold:
        print(f"{key:<14} {cold[key]:8.2f} {warm[key]:8.2f}")
    kernels = [k for k in cold if k not in ("import", "process")]
    print(f"{'kernels total':<14} {sum(cold[k] for k in kernels):8.2f} "
          f"{sum(warm[k] for k in kernels):8.2f}")


if __name__ == "__main__":
    child() if CHILD in sys.argv else main()
