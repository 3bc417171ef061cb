"""pytest-benchmark: what ``algo="auto"`` adds to a call with a warm choice database.

Two benchmarks in one group, the same small layer: ``conv2d(..., algo="auto")`` and
``conv2d(..., algo=<the recorded winner>)``; the difference of their medians is the lookup's
cost (``extra_info["auto_overhead_us"]`` on the auto one, when enabled).
"""

import numpy as np
import pytest

import convbench
from convbench import choices
from convbench.spec import ConvSpec

SPEC = ConvSpec(c=16, h=20, k=32, r=3, padding=1)
_MEDIANS = {}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """The layer recorded in a fresh database: its winner."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CONVBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("choices")))
    mp.setattr(choices, "_TABLES", {})
    mp.setattr(choices, "_HITS", {})
    x = np.random.default_rng(0).standard_normal(SPEC.input_shape).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(SPEC.weight_shape).astype(np.float32)
    convbench.conv2d(x, w, padding=1, algo="auto", auto_mode="measure")
    yield x, w, convbench.last_choice().algorithm
    mp.undo()


@pytest.mark.parametrize("how", ["named", "auto"])
def test_auto_overhead(benchmark, warm, how):
    x, w, winner = warm
    algo = winner if how == "named" else "auto"
    benchmark.group = "auto-lookup"
    y = benchmark.pedantic(convbench.conv2d, args=(x, w), kwargs={"padding": 1, "algo": algo},
                           rounds=200, iterations=5, warmup_rounds=20)
    assert y.shape == SPEC.output_shape and convbench.last_choice().algorithm == winner
    if benchmark.stats is not None:
        _MEDIANS[how] = benchmark.stats.stats.median
        if len(_MEDIANS) == 2:
            benchmark.extra_info["auto_overhead_us"] = (_MEDIANS["auto"] - _MEDIANS["named"]) * 1e6
