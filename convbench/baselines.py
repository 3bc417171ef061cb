"""Baselines: what a user would call instead of convbench, behind the registry's contract.

Two registry entries of family ``baseline`` (see `convbench.registry`), timed and checked
exactly like convbench's kernels (same runner, same reference, same tolerance rule), so that a
report can show convbench against what a user would otherwise pick.  They are references, not
competitors: `convbench.analysis.ranked` leaves them out of winners, crossovers and network
totals, and `convbench.analysis.baseline_ratios` divides every algorithm's time by one of them.

``torch``
    PyTorch's CPU ``torch.nn.functional.conv2d``, called as a user calls it.  In float32 it
    dispatches to oneDNN (``torch._C._select_conv_backend`` gives ``Mkldnn`` for every ResNet-50
    layer on the x86 CPU build); oneDNN has no float64 convolution, so in float64 PyTorch runs
    its own im2col + MKL GEMM (``Slow2d``).  Present only where PyTorch is installed (the
    ``baselines`` extra); ``import convbench`` never imports it.
``scipy``
    ``scipy.signal.correlate2d`` per (output, input) channel pair: what a NumPy user without a
    deep-learning library writes.  Opt-in (``default=False`` in the registry: run only when
    named, ``--algo scipy`` or ``algorithms = ["scipy", ...]``), and small problems only
    (`SCIPY_MAX_MACS`, `SCIPY_MAX_PAIRS`).

Nothing here is imported by ``kernels/``: the kernels stay pure NumPy and Numba.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np

from .spec import ConvSpec

# Names shown where a reader needs to know what the baseline is, not just its registry name.
TITLES = {"torch": "torch (oneDNN)", "scipy": "scipy.signal"}


def title(name: str) -> str:
    """A baseline's name for tables (``torch`` -> ``torch (oneDNN)``); others unchanged."""
    return TITLES.get(name, name)


# ---------------------------------------------------------------------------------------------
# torch


def _torch_same(spec: ConvSpec) -> bool:
    """Whether PyTorch's ``padding='same'`` pads exactly as ``spec``: stride 1 only (PyTorch
    refuses 'same' with a stride), total ``d·(k-1)`` per axis, the odd pixel after (PyTorch's
    ``_conv_forward`` split, the same as `convbench.spec.same_padding` at stride 1)."""
    if (spec.sh, spec.sw) != (1, 1):
        return False
    th, tw = spec.dh * (spec.r - 1), spec.dw * (spec.s - 1)
    return spec.pads == (th // 2, th - th // 2, tw // 2, tw - tw // 2)


def torch_supports(spec: ConvSpec) -> str | None:
    """None, or why PyTorch's ``conv2d`` does not compute ``spec`` as given.

    PyTorch pads symmetrically (``padding=(ph, pw)``) or by its ``'same'`` rule at stride 1;
    any other asymmetric padding needs an explicit ``F.pad`` first, a different call, so it is
    unsupported here rather than timed with a copy that convbench's kernels do not make.
    """
    pt, pb, pl, pr = spec.pads
    if (pt, pl) != (pb, pr) and (spec.direction != "fwd" or not _torch_same(spec)):
        return (f"torch pads symmetrically (conv2d also by its 'same' rule at stride 1); "
                f"pads (top, bottom, left, right) = {spec.pads} need an F.pad first")
    return None


def torch_prepare(b: np.ndarray, spec: ConvSpec):
    """Wrap the prepared operand and return ``compute(a, out)`` calling ``F.conv2d``, or for
    a gradient what autograd calls (`_torch_backward`).

    The weights and each input are wrapped with ``torch.from_numpy`` (no copy); the thread
    count is the run's (``numba.get_num_threads()``), so that PyTorch's OpenMP pool and Numba's
    use the same cores.  No bias, no autograd (NumPy-backed tensors do not require grad).

    Writing into ``out``: ``F.conv2d`` allocates its result, so the contract costs one copy.
    Measured side by side on this machine (2 Zen 5 cores, ``benchmarks``-style median of 50
    calls, float32, batch 1): ``torch.from_numpy(out).copy_(y)`` (PyTorch's parallel copy) adds
    1 us (a 4x8x8 problem), 2-30 us on ResNet-50's 14x14 to 56x56 layers (0.3-8 % of the
    call), and 170 us on conv1 (3.2 MB of output, 13 % of its 1.3 ms); ``np.copyto`` adds up to
    220 us on 56x56 layers (it is single-threaded); ``torch.ops.aten.convolution.out`` is an
    out= wrapper that computes and copies, and measured the same as ``copy_`` or slower on
    small problems (4 us, its dispatch).  ``copy_`` is used: torch's times include that copy,
    which a user of ``F.conv2d`` does not pay, so the comparison leans slightly in torch's
    disfavour on large outputs.

    Two thread pools: PyTorch's OpenMP runtime (its own libgomp) and Numba's (threading layer
    ``omp`` here, the system's libgomp) are separate, and an idle pool's workers spin briefly
    before sleeping.  Measured on 2 cores: calling a Numba kernel right after PyTorch, call by
    call, costs it 1-31 % (im2col on 64@56 3x3: 0.726 -> 0.731 ms; winograd_f43 0.504 ->
    0.659 ms), and PyTorch after a Numba kernel 0-30 % (512@7 3x3: 0.87 -> 1.13 ms).  A sweep
    never alternates call by call (each case's calls run back to back after a warmup), and
    there the effect is below the noise: the ResNet-50 preset's convbench rows with and
    without the torch rows, two runs each, alternated, differ by a geometric mean of 0.992
    and 0.996 between adjacent runs (1.10 between runs of the same kind a minute apart).

    ``workspace_bytes`` of torch rows reads near zero: PyTorch allocates with its own allocator,
    which ``tracemalloc`` does not see (see `torch_workspace` for the estimate).
    """
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(numba.get_num_threads())
    if spec.direction != "fwd":
        return _torch_backward(b, spec)
    w = b
    # PyTorch says, once, that 'same' with an even filter pads a copy of the input: true, and
    # part of what its users pay, but noise in the middle of a run's progress bar.
    warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
    wt = torch.from_numpy(w if w.flags.writeable else w.copy())  # read-only arrays warn
    pt, _, pl, _ = spec.pads
    padding = "same" if (spec.pads[0], spec.pads[2]) != (spec.pads[1], spec.pads[3]) else (pt, pl)
    stride, dilation, groups = (spec.sh, spec.sw), (spec.dh, spec.dw), spec.groups

    def compute(x, out):
        y = F.conv2d(torch.from_numpy(x if x.flags.writeable else x.copy()), wt, None,
                     stride, padding, dilation, groups)
        torch.from_numpy(out).copy_(y)

    return compute


def _torch_backward(b: np.ndarray, spec: ConvSpec):
    """``compute(dy, out)`` of a gradient: ``aten.convolution_backward`` with one output asked
    for, as autograd and ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` call it (the
    operand not read is an expanded one-element tensor of the right shape, their idiom)."""
    import torch

    tb = torch.from_numpy(b if b.flags.writeable else b.copy())
    data = spec.direction == "bwd_d"
    shape_only = tb.new_empty(1).expand(spec.input_shape if data else spec.weight_shape)
    x, w = (shape_only, tb) if data else (tb, shape_only)
    geometry = ([spec.sh, spec.sw], [spec.pads[0], spec.pads[2]], [spec.dh, spec.dw], False,
                [0, 0], spec.groups)
    mask, pick = ((True, False, False), 0) if data else ((False, True, False), 1)

    def compute(dy, out):
        grads = torch.ops.aten.convolution_backward(torch.from_numpy(dy), x, w, None,
                                                    *geometry, mask)
        torch.from_numpy(out).copy_(grads[pick])

    return compute


def torch_workspace(spec: ConvSpec) -> int:
    """Bytes PyTorch may allocate beyond input and output: its own result (copied into
    ``out``), oneDNN's reordered weights and input (blocked layouts), and in float64 the
    im2col matrix of one image per thread (``Slow2d``).  An upper estimate for the memory
    budget; PyTorch's allocations are invisible to ``tracemalloc``, so it is not checked
    against a measurement."""
    out = spec.n * spec.k * spec.oh * spec.ow
    x = spec.n * spec.c * spec.h * spec.w
    cols = spec.cg * spec.r * spec.s * spec.oh * spec.ow * numba.config.NUMBA_NUM_THREADS
    return (out + x + spec.params + (cols if spec.dtype == "float64" else 0)) * spec.itemsize


# ---------------------------------------------------------------------------------------------
# scipy

# Bounds that keep one call well under a second.  Measured on this machine (2 Zen 5 cores;
# correlate2d is single-threaded C): 3 us per call on an 8x8 plane, and 0.5-1.0 GMAC/s on
# planes of 28x28 and up (0.06 GMAC/s on 14x14 1x1, where the call's overhead dominates).
# With both bounds met one call costs at most about 10 000 x 5 us + 2.5e7 / 0.5e9 s = 0.1 s.
SCIPY_MAX_MACS = 25_000_000
SCIPY_MAX_PAIRS = 10_000


def _dilated(spec: ConvSpec) -> tuple[int, int]:
    """The dilated filter's extent: ``(d·(r-1) + 1, d·(s-1) + 1)``."""
    return spec.dh * (spec.r - 1) + 1, spec.dw * (spec.s - 1) + 1


def _scipy_window(spec: ConvSpec) -> tuple[int, int]:
    """Rows and columns of the padded input that the strided outputs read: the rest is cut
    before ``correlate2d`` so that it computes no output the stride throws away at the end."""
    re, se = _dilated(spec)
    return (spec.oh - 1) * spec.sh + re, (spec.ow - 1) * spec.sw + se


def scipy_work(spec: ConvSpec) -> tuple[int, int]:
    """``(pairs, macs)``: channel-pair calls of `scipy_prepare`'s compute, and the multiply-adds
    ``correlate2d`` performs (every output before striding, every tap of the dilated filter,
    its zeros included)."""
    re, se = _dilated(spec)
    hh, ww = _scipy_window(spec)
    pairs = spec.n * spec.k * spec.cg
    return pairs, pairs * (hh - re + 1) * (ww - se + 1) * re * se


def scipy_supports(spec: ConvSpec) -> str | None:
    """Any problem up to `SCIPY_MAX_PAIRS` channel pairs and `SCIPY_MAX_MACS` multiply-adds
    (one call then stays around 0.1 s or less); beyond, a reason naming the bound."""
    pairs, macs = scipy_work(spec)
    if pairs > SCIPY_MAX_PAIRS:
        return (f"scipy runs small problems only: {pairs} correlate2d calls (n*k*c/groups) "
                f"exceed {SCIPY_MAX_PAIRS}")
    if macs > SCIPY_MAX_MACS:
        return (f"scipy runs small problems only: {macs:.3g} multiply-adds exceed "
                f"{SCIPY_MAX_MACS:.3g} (about 0.05 s at 0.5 GMAC/s)")
    return None


def scipy_prepare(w: np.ndarray, spec: ConvSpec):
    """Dilate the filters once and return ``compute(x, out)``: per image and output channel,
    the sum over its group's input channels of ``correlate2d(plane, filter, 'valid')``, then
    every ``stride``-th output.

    Padding is one ``np.pad`` of the input per call (a user pads too); dilation is a filter
    with ``d - 1`` zeros between taps (correlate2d multiplies them: it counts in
    `scipy_work`); the channel sum accumulates in the problem's dtype, as a user's loop would.
    """
    from scipy.signal import correlate2d

    re, se = _dilated(spec)
    wd = np.zeros((spec.k, spec.cg, re, se), dtype=w.dtype)  # (k, c/g, d(r-1)+1, d(s-1)+1)
    wd[:, :, ::spec.dh, ::spec.dw] = w
    pt, pb, pl, pr = spec.pads
    hh, ww = _scipy_window(spec)
    sh, sw, cg, kg = spec.sh, spec.sw, spec.cg, spec.kg

    def compute(x, out):
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))[:, :, :hh, :ww]
        for i in range(x.shape[0]):
            for ko in range(spec.k):
                first = (ko // kg) * cg  # the group's first input channel
                acc = correlate2d(xp[i, first], wd[ko, 0], mode="valid")
                for ci in range(1, cg):
                    acc += correlate2d(xp[i, first + ci], wd[ko, ci], mode="valid")
                out[i, ko] = acc[::sh, ::sw]

    return compute


def scipy_workspace(spec: ConvSpec) -> int:
    """The padded input, the dilated filters, and two unstrided output planes (the sum and the
    call's result)."""
    re, se = _dilated(spec)
    hh, ww = _scipy_window(spec)
    pt, pb, pl, pr = spec.pads
    padded = spec.n * spec.c * (spec.h + pt + pb) * (spec.w + pl + pr)
    planes = 2 * (hh - re + 1) * (ww - se + 1)
    return (padded + spec.k * spec.cg * re * se + planes) * spec.itemsize
