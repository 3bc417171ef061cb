"""A fake registry for harness tests: kernels that work, raise, refuse, or lie."""

import os
import signal
import time

from convbench.registry import Algorithm
from convbench_kernels.reference import reference_conv2d

TOL = {"float32": 1e-5, "float64": 1e-12}


def _exact(w, spec, delay=0.0):
    def compute(x, out):
        if delay:
            time.sleep(delay)
        out[...] = reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                                    dilation=(spec.dh, spec.dw), groups=spec.groups)
    return compute


def _raises(w, spec):
    raise RuntimeError("kernel exploded\nsecond line of the message")


def _zeros(w, spec):
    def compute(x, out):
        out[...] = 0
    return compute


def _off(w, spec):
    exact = _exact(w, spec)

    def compute(x, out):
        exact(x, out)
        out *= 1.01
    return compute


def _dies(w, spec):
    def compute(x, out):
        os.kill(os.getpid(), signal.SIGKILL)
    return compute


def killer() -> Algorithm:
    """An entry whose kernel kills its own process: only for a worker in a process of its
    own, never in the test process."""
    return Algorithm("dies", "fake", "cpu", lambda s: None, _dies, TOL, "kills its process")


def entries(delay: float = 0.0):
    return [
        Algorithm("good", "fake", "cpu", lambda s: None,
                  lambda w, s: _exact(w, s, delay), TOL, "exact"),
        Algorithm("picky", "fake", "cpu", lambda s: None if s.r == 1 else "only 1x1 filters",
                  lambda w, s: _exact(w, s), TOL, "1x1 only"),
        Algorithm("raises", "fake", "cpu", lambda s: None, _raises, TOL, "always fails"),
        Algorithm("zeros", "fake", "cpu", lambda s: None, _zeros, TOL, "writes zeros"),
        Algorithm("off", "fake", "cpu", lambda s: None, _off, TOL, "1% off"),
        Algorithm("hungry", "fake", "cpu", lambda s: None, lambda w, s: _exact(w, s), TOL,
                  "asks for too much memory", workspace=lambda s: 1 << 50),
        Algorithm("gpu", "fake", "cuda", lambda s: None, lambda w, s: _exact(w, s), TOL,
                  "needs a GPU"),
    ]


# A roofline with round numbers, so that tests compute a row's fractions by hand.
ROOF_PEAK = {"float32": 100.0, "float64": 50.0}  # GFLOP/s
ROOF_BANDWIDTH = {"L2": 400.0, "L3": 200.0, "DRAM": 50.0}  # GB/s
ROOF_L2, ROOF_L3 = 1 << 20, 32 << 20  # bytes per core, per instance


def roofline(threads: int):
    """A `convbench.roofline.Roofline` at ``threads`` keyed for this machine (a cache hit)."""
    from convbench import roofline as rl

    return rl.Roofline(peak_gflops=dict(ROOF_PEAK), bandwidth_gbs=dict(ROOF_BANDWIDTH),
                       capacity_bytes={"L2": threads * ROOF_L2, "L3": ROOF_L3, "DRAM": None},
                       threads=threads, key=rl.cache_key(threads), details={"fake": True})


def prepare_roofline_cache(max_threads: int) -> None:
    """Write `roofline` for 1 to ``max_threads`` threads into the cache
    (``$CONVBENCH_CACHE_DIR``), so that a run finds it and measures nothing."""
    from convbench import cache
    from convbench import roofline as rl

    for t in range(1, max_threads + 1):
        roof = roofline(t)
        cache.write(rl.cache_path(roof.key), roof.to_dict())
