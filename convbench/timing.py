"""Time a callable: warmups, values, loops (pyperf's vocabulary).  Knows nothing of convolution.

- A *loop* is one call of the function under test.
- A *value* is the mean time of one call over ``loops`` consecutive calls; ``loops`` is
  calibrated so that one value lasts at least ``min_time`` seconds.
- *Warmups* are values computed and thrown away.

The first call of a freshly compiled function includes compilation: `measure` records it as
``compile_s`` (first call minus a steady call) and keeps it out of the statistics.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A timed interval (one value: `loops` calls) shorter than this is dominated by the clock's
# overhead and jitter (perf_counter resolves ~100 ns here; pyperf warns under 1 ms for
# whole-process benchmarks).
RELIABLE_SECONDS = 1e-6
# pyperf's rule: a spread (standard deviation) over 10% of the centre is not to be trusted.
MAX_SPREAD = 0.10


def stats(values: list[float]) -> dict:
    """Summary of ``values``: median, min, q1, q3 (linear interpolation between order
    statistics, numpy's default), standard deviation (sample, n-1), count."""
    if not values:
        raise ValueError("values must not be empty")
    v = sorted(values)
    n = len(v)

    def quantile(q):
        pos = q * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)

    return {
        "median": statistics.median(v),
        "min": v[0],
        "q1": quantile(0.25),
        "q3": quantile(0.75),
        "std": statistics.stdev(v) if n > 1 else 0.0,
        "n_values": n,
    }


@dataclass
class Timing:
    """What `measure` found; seconds throughout."""

    compile_s: float
    values: list[float]
    loops: int
    warnings: list[str] = field(default_factory=list)

    @property
    def stats(self) -> dict:
        return stats(self.values)


def measure(call: Callable[[], object], *, min_time: float = 0.02, values: int = 5,
            max_seconds: float = 5.0, warmups: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``call()``.

    Parameters
    ----------
    call : callable
        The work, without arguments.
    min_time : float
        Seconds each value must last at least; loops are doubled until it does.
    values : int
        Values wanted after the warmups.
    max_seconds : float
        Budget for the whole measurement (compilation excluded); fewer values are kept, with
        a warning, when it runs out.
    warmups : int
        Values computed after calibration and thrown away.
    clock : callable
        Seconds as a float; tests pass a fake one.

    Returns
    -------
    Timing
    """

    def run(loops: int) -> float:
        t0 = clock()
        for _ in range(loops):
            call()
        return (clock() - t0) / loops

    first = run(1)  # compiles, or loads from the cache
    steady = run(1)
    compile_s = max(first - steady, 0.0)
    start = clock()
    loops, value = 1, steady
    while value * loops < min_time and clock() - start < max_seconds:
        loops = max(loops * 2, min(int(min_time / max(value, 1e-9)) + 1, loops * 16))
        value = run(loops)
    for _ in range(warmups):
        if clock() - start >= max_seconds:
            break
        run(loops)
    kept: list[float] = []
    while len(kept) < values and (not kept or clock() - start < max_seconds):
        kept.append(run(loops))
    warnings = []
    if len(kept) < values:
        warnings.append(f"budget of {max_seconds:g} s exhausted after {len(kept)} of "
                        f"{values} values")
    s = stats(kept)
    if s["median"] > 0 and s["std"] > MAX_SPREAD * s["median"]:
        warnings.append(f"unstable: std is {s['std'] / s['median']:.0%} of the median")
    if s["median"] * loops < RELIABLE_SECONDS:  # the interval actually timed
        warnings.append(f"a value lasts {s['median'] * loops:.2g} s, under the timer's reliable "
                        f"resolution of {RELIABLE_SECONDS:g} s")
    return Timing(compile_s=compile_s, values=kept, loops=loops, warnings=warnings)


def time_once(call: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds taken by one call (for one-off steps such as a prepare)."""
    t0 = clock()
    call()
    return clock() - t0
