"""CUDA FFT convolution: the Stockham FFT against numpy.fft, the convolution against the
float64 oracle on named edge cases (outputs NaN-filled before launch).

Tolerances, max|err| / max|ref|: float32 1e-5, float64 1e-12.  Measured on the simulator:
FFTs up to 32 points 1.2e-7 (float32) / 3e-16 (float64); convolutions 2e-8..2.2e-7 /
2e-16..4e-16.
"""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import tracemalloc

import numpy as np
from numba import cuda

import convbench_kernels.cpu.fft
from convbench.spec import ConvSpec
from convbench_kernels.cuda import fft
from convbench_kernels.reference import reference_conv2d
from tests.cases import CASES, random_arrays

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
TOL = {"float32": 1e-5, "float64": 1e-12, "complex64": 1e-5, "complex128": 1e-12}
SIZES = [1, 2, 4, 8, 16, 32]


def _rel_err(got, want):
    return float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-300)


def _crand(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _fft_lines(a, inverse, shared):
    d = cuda.to_device(a)
    fft.plan_fft(a.shape, a.dtype, inverse=inverse, shared=shared)(d)
    return d.copy_to_host()


# ----------------------------------------------------------------------------- FFT
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "global"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_fft_lines(dtype, n, shared):
    """Batched 1-D transforms along axis 1: rows (B, N, 1) and columns (B, N, M), forward
    and unnormalised inverse."""
    for shape, seed in (((5, n, 1), 0), ((3, n, 2), 1)):
        a = _crand(shape, dtype, seed)
        got = _fft_lines(a, False, shared)
        assert got.dtype == dtype
        assert _rel_err(got, np.fft.fft(a, axis=1)) <= TOL[dtype]
        got = _fft_lines(a, True, shared)
        assert _rel_err(got, n * np.fft.ifft(a, axis=1)) <= TOL[dtype]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "global"])
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_fft2(dtype, shared):
    """2-D transforms (rows, then columns) of a batch of planes, forward and inverse."""
    for shape in ((2, 8, 16), (3, 4, 1), (1, 1, 32), (2, 32, 2)):
        a = _crand(shape, dtype, 2)
        d = cuda.to_device(a)
        fft.plan_fft2(shape, dtype, shared=shared)(d)
        assert _rel_err(d.copy_to_host(), np.fft.fft2(a)) <= TOL[dtype]
        d = cuda.to_device(a)
        fft.plan_fft2(shape, dtype, inverse=True, shared=shared)(d)
        want = shape[1] * shape[2] * np.fft.ifft2(a)
        assert _rel_err(d.copy_to_host(), want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_fft_partial_blocks(dtype, monkeypatch):
    """A 256-byte shared buffer holds a few lines per block: several blocks, the last one
    partial; lines longer than it take the global path."""
    monkeypatch.setattr(fft, "SMEM_BYTES", 256)
    for shape in ((5, 8, 2), (7, 4, 1), (3, 16, 3), (2, 32, 1), (1, 64, 3)):
        a = _crand(shape, dtype, 3)
        assert _rel_err(_fft_lines(a, False, None), np.fft.fft(a, axis=1)) <= TOL[dtype]


@pytest.mark.parametrize(("itemsize", "lanes"), [(8, 16), (16, 8)], ids=["c64", "c128"])
@pytest.mark.parametrize("n", [2, 8, 16, 32, 64])
def test_column_lines_hit_distinct_banks(n, itemsize, lanes):
    """The lanes served together (a half-warp of 8-byte points, a quarter-warp of 16-byte
    ones) load point j of consecutive lines: with the padded line stride their 4-byte banks
    (32 of them) are all distinct; with lines n apart they would collide."""
    smem = fft.SMEM_BYTES // itemsize
    words = itemsize // 4

    def banks(ld):
        return [(li * ld * words + j) % 32 for li in range(lanes) for j in range(words)]

    ld = fft.line_stride(n, 3, smem)
    assert len(set(banks(ld))) == lanes * words
    assert fft.line_stride(n, 1, smem) == n  # rows: consecutive points already
    if n >= 16:
        assert len(set(banks(n))) < lanes * words


def test_fft_rejects_other_lengths():
    with pytest.raises(ValueError, match="power of two"):
        fft.plan_fft((1, 12, 1), "complex64")


# ----------------------------------------------------------------------------- convolution
def _conv(spec, x=None, w=None, compute=None):
    if x is None:
        x, w = random_arrays(spec)
    compute = compute or fft.prepare(w, spec)
    out = cuda.to_device(np.full(spec.output_shape, np.nan, dtype=spec.dtype))
    compute(cuda.to_device(x), out)
    got = out.copy_to_host()
    want = reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                            dilation=(spec.dh, spec.dw), groups=spec.groups)
    return got, want, compute


def _check(spec, got, want):
    assert got.dtype == spec.dtype and got.shape == want.shape
    assert np.isfinite(got).all(), "outputs left unwritten"
    assert _rel_err(got, want) <= TOL[spec.dtype]


NAMED = ["1x1 image", "1x1 image, 3x3 same", "partial tiles", "tail channels", "stride 2 pad 1",
         "stride (2,3)", "even kernel same", "even kernel same stride 2", "asymmetric padding",
         "1x7", "7x1", "dilation 2", "dilation (2,1) stride 2", "groups 2", "groups 4 stride 2",
         "depthwise", "batch 3", "float64", "large filter"]
OWN = {
    "1x3": ConvSpec(c=3, h=5, w=6, k=3, r=1, s=3, padding=(0, 1)),
    "3x1 float64": ConvSpec(c=2, h=6, w=3, k=3, r=3, s=1, padding=(1, 0), dtype="float64"),
    "odd channels per group": ConvSpec(c=6, h=5, k=6, r=3, groups=2, padding=1),
    "batch 2 stride 3 > filter": ConvSpec(n=2, c=3, h=8, k=2, r=2, stride=3, padding=(2, 0)),
    "dilation 3 aliased filter": ConvSpec(c=2, h=1, w=3, k=3, r=3, s=2, dilation=(3, 2),
                                          padding=(3, 3, 1, 2)),
}


@pytest.mark.parametrize("name", NAMED + list(OWN))
def test_conv(name):
    spec = CASES[name] if name in CASES else OWN[name]
    assert fft.supports(spec) is None
    got, want, _ = _conv(spec)
    _check(spec, got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_global_fft_path(dtype, monkeypatch):
    """Transforms longer than the shared buffer take the per-stage global kernels (here a
    64-byte buffer: 16 > 8 or 4 points), odd and even stage counts, with the scratch copy."""
    monkeypatch.setattr(fft, "SMEM_BYTES", 64)
    spec = ConvSpec(c=3, h=9, w=3, k=3, r=3, stride=2, padding=1, dtype=dtype)
    got, want, compute = _conv(spec)
    assert not compute.plan["shared_fft"] and (compute.plan["p"], compute.plan["q"]) == (16, 4)
    _check(spec, got, want)


def test_conv_reuses_buffers():
    """A second call with another input overwrites every workspace it reads."""
    spec = CASES["groups 2"]
    x, w = random_arrays(spec, 0)
    _, _, compute = _conv(spec, x, w)
    x = random_arrays(spec, 1)[0]
    got, want, _ = _conv(spec, x, w, compute)
    _check(spec, got, want)


def test_transform_size():
    """P is the power of two >= max(h + pt, h + pb), not h + pt + pb."""
    assert fft.transform_size(7, 1, 1) == 8
    assert fft.transform_size(1, 1, 1) == 2
    assert fft.transform_size(1, 0, 0) == 1
    assert fft.transform_size(8, 0, 3) == 16


def test_supports_is_the_cpu_rule():
    assert fft.supports is convbench_kernels.cpu.fft.supports


def _check_workspace(spec, held):
    bound = fft.workspace(spec)
    assert held <= bound + 64 * 1024, (held, bound)
    assert bound <= 2 * held + 64 * 1024, (held, bound)


@pytest.mark.skipif(not SIMULATED, reason="tracemalloc sees host memory only; on a GPU "
                    "test_workspace_bounds_device_allocations measures the device's")
@pytest.mark.parametrize("name", ["tail channels", "float64"])
def test_workspace_bounds_allocations(name):
    """workspace(spec) bounds what prepare keeps allocated (simulator device arrays are
    NumPy arrays, which tracemalloc sees)."""
    spec = CASES[name]
    _, w = random_arrays(spec)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        compute = fft.prepare(w, spec)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert compute is not None
    _check_workspace(spec, held)


@pytest.mark.skipif(SIMULATED, reason="the simulator has no device memory: its device arrays "
                    "are NumPy arrays (test_workspace_bounds_allocations traces them)")
@pytest.mark.parametrize("name", ["tail channels", "float64"])
def test_workspace_bounds_device_allocations(name, monkeypatch):
    """workspace(spec) bounds the device memory prepare requests (every device allocation
    goes through the context's ``memalloc``)."""
    from numba.cuda.cudadrv import driver

    spec = CASES[name]
    _, w = random_arrays(spec)
    sizes = []
    memalloc = driver.Context.memalloc

    def counted(self, bytesize):
        sizes.append(bytesize)
        return memalloc(self, bytesize)

    monkeypatch.setattr(driver.Context, "memalloc", counted)
    assert fft.prepare(w, spec) is not None
    _check_workspace(spec, sum(sizes))


_PTX_SCRIPT = r"""
import re, sys
import numpy as np
from numba import cuda, types as T
try:
    cuda.compile_ptx(lambda a: None, (T.float32[::1],), cc=(7, 5))
except Exception as e:  # no NVVM / NVRTC libraries: nothing to check here
    print(e)
    sys.exit(77)
from convbench_kernels.cuda import fft as F
for ix in (np.uint32, np.int64):
    gather, reduce, crop = F._conv_kernels(ix)
    for ft, ct in ((T.float32, T.complex64), (T.float64, T.complex128)):
        a3, a4, a5 = ct[:, :, ::1], ct[:, :, :, ::1], ct[:, :, :, :, ::1]
        smem = F.SMEM_BYTES // (ct.bitwidth // 8)
        kernels = {
            "fft_shared": (F._fft_shared_kernel(smem, ix),
                           (a3, ct[::1], T.int64, T.boolean, T.int64, T.int64)),
            "fft_stage": (F._fft_stage_kernel(ix), (a3, a3, ct[::1], T.int64, T.boolean)),
            "copy": (F._copy, (ct[::1], ct[::1])),
            "gather": (gather, (ft[:, :, :, ::1], a4, ct, ct)),
            "reduce": (reduce, (a4, a5, a4, T.int64[::1], T.int64[::1], ct)),
            "crop": (crop, (a4, ft[:, :, :, ::1], T.int64, T.int64, T.int64, T.int64)),
        }
        for name, (kernel, sig) in kernels.items():
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(7, 5))
            ops = [ln for ln in ptx.splitlines()
                   if re.match(r"\s*(add|sub|mul|fma|neg|div|ld|st|cvt)\S*\.f64", ln)]
            if ft == T.float32 and ops:
                sys.exit(f"{name} float32 computes in float64: {ops[:3]}")
            wide = [ln for ln in ptx.splitlines() if re.match(r"\s*(div|rem)\.[su]64", ln)]
            if ix is np.uint32 and wide:
                sys.exit(f"{name} splits 32-bit indices in 64 bits: {wide[:3]}")
print("ok")
"""


def test_kernels_compile_for_the_gpu(tmp_path):
    """Every kernel compiles to PTX (sm_75) in both dtypes and both index types, the float32
    ones without a float64 operation, the 32-bit index ones without a 64-bit division: what
    the simulator cannot show (it runs Python, not Numba's CUDA
    compiler).  Needs the NVVM and NVRTC libraries, not a GPU; skipped without them."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    script = tmp_path / "ptx.py"
    script.write_text(_PTX_SCRIPT)
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=300)
    if res.returncode == 77:
        pytest.skip("no CUDA compiler libraries (NVVM, NVRTC): " + res.stdout.strip()[-200:])
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr
