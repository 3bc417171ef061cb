"""What every CUDA family needs to shape its launches: the machine to fill, block counts.

A launch should give every SM of the GPU at least ``BLOCKS_PER_SM`` blocks, so that one block
waiting on memory leaves another to run.  The SM count is the current device's when one
exists, else ``DEFAULT_SMS``, the count of an H100 or H200 SXM (132): launch shapes are a pure
function of the problem and that number (tests compute the grids of real networks' layers
for 132 SMs on a machine without a GPU).
"""

import os
from functools import cache

import numpy as np
from numba import cuda

__all__ = ["DEFAULT_SMS", "BLOCKS_PER_SM", "MAX_GRID_YZ", "NARROW_LIMIT", "sm_count",
           "min_blocks", "threads_for", "blocks", "grid_1d", "index_type", "splitter",
           "bounded_jit", "launcher"]

DEFAULT_SMS = 132  # H100 / H200 SXM
SIMULATOR_SMS = 1
BLOCKS_PER_SM = 2
MAX_GRID_YZ = 65535  # hardware limit of gridDim.y and gridDim.z
WARP = 32
NARROW_LIMIT = 1 << 32  # flat indices below this split in 32-bit unsigned arithmetic


@cache
def sm_count() -> int:
    """SMs of the current CUDA device, `DEFAULT_SMS` without one, and `SIMULATOR_SMS` on
    Numba's simulator, which runs one block at a time (its cost is one Python thread per GPU
    thread: launches shaped for 132 SMs would make tiny test problems run the most threads
    with the least work each)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return SIMULATOR_SMS
    try:
        if cuda.is_available():
            return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # a broken driver leaves the default; the launch itself will say why
        pass
    return DEFAULT_SMS


def min_blocks(sms: int | None = None) -> int:
    """Blocks a launch needs to give every SM `BLOCKS_PER_SM` (``sms``: default the device's)."""
    return BLOCKS_PER_SM * (sm_count() if sms is None else sms)


def threads_for(items: int, threads: int, sms: int | None = None) -> int:
    """Threads per block for ``items`` one-thread work items: ``threads``, halved (down to
    one warp, `WARP`) while that leaves fewer than `min_blocks` blocks.  Small layers get
    more, smaller blocks instead of leaving SMs idle."""
    need = min_blocks(sms)
    while threads > WARP and -(-items // threads) < need:
        threads //= 2
    return threads


def blocks(items: int, threads: int, cap: int | None = None) -> int:
    """Blocks of ``threads`` covering ``items`` work items, one each (at least 1, at most
    ``cap``, beyond which the kernel's threads loop in grid strides)."""
    n = max(1, -(-items // threads))
    return n if cap is None else min(n, cap)


def grid_1d(items: int, threads: int, sms: int | None = None, cap: int | None = None):
    """``((blocks,), (threads,))`` for ``items`` one-thread work items, at most ``threads``
    per block (`threads_for`) and ``cap`` blocks (`blocks`)."""
    t = threads_for(items, threads, sms)
    return (blocks(items, t, cap),), (t,)


def index_type(*totals):
    """The integer type a kernel splits its flat indices in: ``numpy.uint32`` when every
    total (the number of flat indices, or any extent divided by) is under `NARROW_LIMIT`,
    else ``numpy.int64``.

    GPUs have no integer divider: a 64-bit signed ``//`` or ``%`` is a software routine
    (NVPTX guards it with a run-time test for operands that fit 32 bits, a branch per
    split), where an unsigned 32-bit one is a short multiply sequence.  Numba widens every
    integer operation to 64 bits, but LLVM narrows an unsigned division of zero-extended
    32-bit values back to 32 bits: the PTX of a uint32 split has ``div.u32`` / ``rem.u32``
    and nothing else.
    """
    return np.uint32 if max(totals) < NARROW_LIMIT else np.int64


@cache
def splitter(ix):
    """A device function ``split(a, d) -> (a // d, a % d)`` computed in ``ix`` (see
    `index_type`) and returned as int64, so that signed arithmetic (padding offsets) may
    follow without mixing signed and unsigned types (Numba makes that float64).

    Under the simulator, kernels run as Python and ``split`` stays a plain function: a
    simulated device function swaps the kernel's module in and out on every call, which made
    the CUDA tests a third slower for the same arithmetic."""

    def split(a, d):
        ua, ud = ix(a), ix(d)
        return np.int64(ua // ud), np.int64(ua % ud)

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return split
    return cuda.jit(device=True, inline="always")(split)


@cache
def unflattener(ix):
    """A device function ``unflat(a, d1, d2, d3) -> (i0, i1, i2, i3)``: the indices of flat
    element ``a`` of an (n, d1, d2, d3) array (last axis fastest), by `splitter`'s ``split``
    in ``ix``; plain Python under the simulator, as ``split``."""
    split = splitter(ix)

    def unflat(a, d1, d2, d3):
        t, i3 = split(a, d3)
        t, i2 = split(t, d2)
        i0, i1 = split(t, d1)
        return i0, i1, i2, i3

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return unflat
    return cuda.jit(device=True, inline="always")(unflat)


def bounded_jit(threads: int, blocks_per_sm: int):
    """``cuda.jit`` with launch bounds: blocks of at most ``threads``, of which
    ``blocks_per_sm`` must fit on one SM (ptxas then caps the registers a thread gets).  The
    simulator's ``jit`` takes no bounds (it has no registers): plain ``cuda.jit`` there."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return cuda.jit
    return cuda.jit(launch_bounds=(threads, blocks_per_sm))


def launcher(kernel, grid, block):
    """``kernel`` configured for ``(grid, block)``, built once (in a ``prepare``) and called
    for every launch.

    numba-cuda's ``kernel[grid, block]`` is a launch configuration object of its own; the
    simulator's configures the kernel object itself and returns it, so that two
    configurations of one kernel built ahead would both launch with the last one.  There the
    configuration is applied at each call instead."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return lambda *args: kernel[grid, block](*args)
    return kernel[grid, block]
