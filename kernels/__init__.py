"""Pure compute: convolution kernels in NumPy and Numba, one module per algorithm family.

Installed as ``convbench_kernels`` (the repository keeps the folder ``kernels/``).  No timing,
no I/O, no pandas, and never an import of the ``convbench`` harness.

- ``convbench_kernels.contract``: what every family promises (``supports``, ``prepare``,
  ``workspace``) and the rules both devices share;
- ``convbench_kernels.reference``: the float64 oracle;
- ``convbench_kernels.winograd_math``: the Winograd transforms from interpolation points;
- ``convbench_kernels.cpu.*``: the Numba CPU kernels;
- ``convbench_kernels.cuda.*``: the numba.cuda kernels, imported only when asked for, so that
  ``import convbench_kernels`` works on a machine without CUDA.

Kernels that call BLAS next to ``prange`` regions issue single-threaded GEMMs from Numba's
threads (`convbench_kernels.cpu.common.single_threaded_blas`): one thread pool, not two
fighting.  Large CPU workspaces come from `convbench_kernels.cpu.common.pooled_empty`, which
reuses freed layers' memory, never a live layer's.  Saves into Numba's cache are locked
(`convbench_kernels.numba_cache`): several processes compile into one cache at once.
"""

from convbench_kernels.cpu.target import widest_vectors as _widest_vectors
from convbench_kernels.numba_cache import lock_cache_saves as _lock_cache_saves

_widest_vectors()
_lock_cache_saves()
