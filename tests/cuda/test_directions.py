"""Both gradients of the CUDA entries that compute them, on the simulator, against the float64
gradient oracles: the input's by the stride phases on device arrays (crop, place, zero
kernels), the weights' by the direct kernel.  Small shapes: each GPU thread runs in Python."""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np  # noqa: E402

import convbench  # noqa: E402
from convbench import devices, registry  # noqa: E402
from convbench.spec import ConvSpec  # noqa: E402
from tests.kernels.test_directions import operands  # noqa: E402

SPECS = {
    "3x3 stride 1": ConvSpec(c=3, h=6, w=5, k=4, r=3, padding=1),
    "3x3 stride 2, crops": ConvSpec(c=2, h=7, k=3, r=3, stride=2, padding=(0, 2, 1, 0)),
    "1x1 stride 2 pad 1": ConvSpec(c=3, h=5, k=2, r=1, stride=2, padding=1),
    "2x2 up-convolution, batch 2": ConvSpec(n=2, c=2, h=6, k=3, r=2, stride=2),
    "depthwise, float64": ConvSpec(c=3, h=6, k=3, r=3, groups=3, padding=1, dtype="float64"),
    "groups 2 dilation 2": ConvSpec(c=4, h=7, k=2, r=2, groups=2, dilation=2),
}


@pytest.mark.parametrize("direction", ["bwd_d", "bwd_w"])
@pytest.mark.parametrize("case", SPECS)
@pytest.mark.parametrize("algo", registry.algorithms("cuda"), ids=lambda a: a.name)
def test_gradients_on_the_device(algo, case, direction):
    spec = SPECS[case].with_(direction=direction)
    reason = algo.supports(spec)
    if reason is not None:
        assert reason.strip()
        return
    a, b, ref = operands(spec)
    dev = devices.get("cuda")
    out = dev.nan(spec.result_shape, spec.dtype)
    algo.prepare(b, spec)(dev.put(a), out)
    got = dev.get(out)
    assert np.isfinite(got).all(), "unwritten (NaN) elements"
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= algo.tolerance[spec.dtype], f"{algo.name} on {spec.id}: {err:.3g}"


def test_which_cuda_entries_compute_which_gradients():
    spec = SPECS["3x3 stride 1"]
    data = {a.name for a in registry.algorithms("cuda")
            if a.supports(spec.with_(direction="bwd_d")) is None}
    weight = {a.name for a in registry.algorithms("cuda")
              if a.supports(spec.with_(direction="bwd_w")) is None}
    assert data == {"direct", "im2col", "fft", "winograd_f23", "winograd_f43", "winograd_f63"}
    assert weight == {"direct"}


def test_transposed_convolution_on_the_device_matches_the_host():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    want = convbench.conv_transpose2d(x, w, stride=2, output_padding=1)
    got = convbench.conv_transpose2d(x, w, stride=2, output_padding=1, algo="im2col",
                                     device="cuda")
    np.testing.assert_allclose(got, want, atol=1e-5)
