"""Every CUDA registry entry, through the registry and the devices layer, against the float64
reference on the named edge cases of the CPU kernels (those small enough for the simulator).

Outputs are device arrays filled with NaN before the launch.
"""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np  # noqa: E402

import convbench  # noqa: E402
from convbench import devices, registry  # noqa: E402
from tests.cases import CASES  # noqa: E402
from tests.kernels.test_algorithms import (  # noqa: E402
    PHASE_NAMES,
    relative_error,
    weights_and_reference,
)

# The CPU kernels' named cases that stay tiny: the simulator runs each GPU thread in Python,
# and the group stays under 5 minutes.  Groups, batches and channel multipliers are covered
# family by family (test_winograd_depthwise, test_direct_im2col, test_fft), on smaller shapes.
NAMES = ["1x1 image, 3x3 same", "one f43 tile", "partial tiles", "stride 2 pad 1",
         "asymmetric padding", "1x7", "dilation 2", "float64"]
ALGOS = registry.algorithms("cuda")


@pytest.mark.parametrize("case", NAMES)
@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_named_case_on_the_device(algo, case):
    spec = CASES[case]
    reason = algo.supports(spec)
    if reason is not None:
        assert reason == registry.get(algo.name, "cpu").supports(spec)  # the CPU twin's rule
        return
    x, w, ref = weights_and_reference(algo, spec)
    dev = devices.get("cuda")
    out = dev.nan(spec.output_shape, spec.dtype)
    compute = algo.prepare(w, spec)
    compute(dev.put(x), out)
    assert {name for name, _ in getattr(compute, "phases", ())} <= PHASE_NAMES
    got = dev.get(out)
    assert got.dtype == spec.dtype and np.isfinite(got).all(), "unwritten (NaN) elements"
    assert relative_error(got, ref) <= algo.tolerance[spec.dtype]


def test_api_takes_and_returns_numpy_arrays():
    spec = CASES["partial tiles"]
    x, w, ref = weights_and_reference(registry.get("winograd_f43", "cuda"), spec)
    got = convbench.conv2d(x, w, padding="same", algo="winograd_f43", device="cuda")
    assert isinstance(got, np.ndarray) and relative_error(got, ref) < 2e-4


def test_cuda_rows_record_the_launch_floor():
    """A CUDA row carries its device's empty-kernel launch time (measured once per device)
    beside the copies' times."""
    from convbench import runner, sweep

    spec = CASES["1x1 image, 3x3 same"]
    dev = devices.get("cuda")
    timing = sweep.TimingConfig(min_time=1e-4, values=1, max_seconds=0.5, warmups=0)
    row = runner.run_case(spec, registry.get("direct", "cuda"), runner._Problem(spec), timing,
                          1 << 30, dev)
    assert row["status"] == "ok" and row["simulated"], row
    assert row["launch_floor_s"] > 0 and row["launch_floor_s"] == dev.launch_floor()
    assert row["h2d_s"] >= 0 and row["d2h_s"] >= 0
