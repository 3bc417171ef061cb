"""Flat indices split in 32-bit unsigned arithmetic (when the totals fit) and in 64-bit signed
arithmetic give the same outputs, bit for bit, for every CUDA registry entry."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np  # noqa: E402

from convbench import devices, registry  # noqa: E402
from convbench.spec import ConvSpec  # noqa: E402
from convbench_kernels.cuda import launch  # noqa: E402
from tests.kernels.test_algorithms import relative_error, weights_and_reference  # noqa: E402

# batch 2, odd sizes, padding: every split of every kernel has a remainder to get right
SPEC = ConvSpec(n=2, c=3, h=3, w=5, k=2, r=3, padding=1)
DEPTHWISE = ConvSpec(n=2, c=3, h=3, w=5, k=6, r=3, groups=3, padding=1, stride=2)


def test_index_type_narrows_below_two_to_the_32():
    assert launch.index_type(1, (1 << 32) - 1) is np.uint32
    assert launch.index_type(7, 1 << 32) is np.int64


@pytest.mark.parametrize("algo", registry.algorithms("cuda"), ids=lambda a: a.name)
def test_both_index_types_agree(algo, monkeypatch):
    spec = DEPTHWISE if algo.supports(SPEC) else SPEC
    assert algo.supports(spec) is None
    x, w, ref = weights_and_reference(algo, spec)
    dev = devices.get("cuda")

    def run():
        out = dev.nan(spec.output_shape, spec.dtype)
        algo.prepare(w, spec)(dev.put(x), out)
        return dev.get(out)

    narrow = run()
    monkeypatch.setattr(launch, "NARROW_LIMIT", 0)  # every total is "too large": int64
    wide = run()
    assert np.isfinite(narrow).all() and relative_error(narrow, ref) <= algo.tolerance[spec.dtype]
    np.testing.assert_array_equal(narrow, wide)
