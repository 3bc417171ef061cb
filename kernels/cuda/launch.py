"""What every CUDA family needs to shape its launches: the machine to fill, block counts.

A launch should give every SM of the GPU at least ``BLOCKS_PER_SM`` blocks, so that one block
waiting on memory leaves another to run.  The SM count is the current device's when one
exists, else ``DEFAULT_SMS``, the count of an H100 or H200 SXM (132): launch shapes are then
a pure function of the problem and that number, computed the same way with or without a GPU
(tests compute the grids of real networks' layers on a machine without one).
"""

import os
from functools import cache

__all__ = ["DEFAULT_SMS", "BLOCKS_PER_SM", "MAX_GRID_YZ", "sm_count", "min_blocks", "blocks"]

DEFAULT_SMS = 132  # H100 / H200 SXM
BLOCKS_PER_SM = 2
MAX_GRID_YZ = 65535  # hardware limit of gridDim.y and gridDim.z


@cache
def sm_count() -> int:
    """SMs of the current CUDA device; `DEFAULT_SMS` on the simulator or without a device."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return DEFAULT_SMS
    from numba import cuda

    try:
        if cuda.is_available():
            return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # a broken driver leaves the default; the launch itself will say why
        pass
    return DEFAULT_SMS


def min_blocks(sms: int | None = None) -> int:
    """Blocks a launch needs to give every SM `BLOCKS_PER_SM` (``sms``: default the device's)."""
    return BLOCKS_PER_SM * (sm_count() if sms is None else sms)


def blocks(items: int, threads: int, cap: int | None = None) -> int:
    """Blocks of ``threads`` covering ``items`` work items, one each (at least 1, at most
    ``cap``, beyond which the kernel's threads loop in grid strides)."""
    n = max(1, -(-items // threads))
    return n if cap is None else min(n, cap)
