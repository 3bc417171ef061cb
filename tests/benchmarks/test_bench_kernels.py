"""pytest-benchmark: every CPU algorithm on a few small layers, compile excluded; and the
two gradients of one of them (batch 2) by every algorithm that computes them.

Grouped by problem id, with the algorithm and effective GFLOP/s in ``extra_info``.  With
``--benchmark-disable`` (the default in pyproject) each case runs once, as a smoke test; CI
runs them enabled and keeps the JSON under ``results/``.
"""

import numpy as np
import pytest

from convbench import registry
from convbench.spec import ConvSpec
from tests.cases import random_arrays, separable_weights

LAYERS = [
    ConvSpec(c=32, h=28, k=32, r=3, padding=1),
    ConvSpec(c=16, h=32, k=16, r=7, padding="same"),
    ConvSpec(c=32, h=28, k=32, r=3, padding=1, groups=32),
    ConvSpec(c=64, h=14, k=128, r=1),
]


GRADIENTS = [LAYERS[0].with_(n=2, direction=d) for d in ("bwd_d", "bwd_w")]

CASES = [pytest.param(algo, spec, id=f"{algo.name}-{spec.id}")
         for spec in LAYERS + GRADIENTS for algo in registry.algorithms("cpu")
         if algo.supports(spec) is None]


@pytest.mark.parametrize(("algo", "spec"), CASES)
def test_kernel_speed(benchmark, algo, spec):
    x, w = random_arrays(spec)
    if algo.operator == "separable":
        w = separable_weights(spec)
    if spec.direction != "fwd":  # compute(dy, result), prepared with w (bwd_d) or x (bwd_w)
        dy = np.random.default_rng(2).standard_normal(spec.output_shape).astype(spec.dtype)
        w, x = (x if spec.direction == "bwd_w" else w), dy
    compute = algo.prepare(w, spec)
    out = np.full(spec.result_shape, np.nan, dtype=spec.dtype)
    compute(x, out)  # compiles (or loads from the cache) outside the timing
    benchmark.group = spec.id
    benchmark.extra_info.update(algorithm=algo.name, problem=spec.id, flops=spec.flops)
    benchmark.pedantic(compute, args=(x, out), rounds=5, iterations=3, warmup_rounds=1)
    assert np.isfinite(out).all()
    if benchmark.stats is not None:
        benchmark.extra_info["gflops"] = spec.flops / benchmark.stats.stats.median / 1e9
