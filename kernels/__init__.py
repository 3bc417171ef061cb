"""Pure compute: convolution kernels in NumPy and Numba, one module per algorithm family.

No timing, no I/O, no pandas.  ``kernels.reference`` is the float64 oracle,
``kernels.winograd_math`` derives the Winograd transforms, ``kernels.cpu.*`` hold
the Numba CPU kernels.  CUDA kernels live in ``kernels.cuda`` and are imported
only when asked for, so that ``import kernels`` works on a machine without CUDA.

Every CPU family module offers the same three functions, which take a problem
``spec`` (any object with ConvSpec's attributes: ``n c h w k r s sh sw dh dw
pads groups cg kg oh ow dtype``):

``supports(spec) -> str | None``
    None when the family computes the problem, else the reason it does not.
``prepare(w, spec) -> compute``
    Work done once per layer (filter transforms, workspace allocation); returns
    ``compute(x, out)``, which writes the convolution of the C-contiguous input
    ``x`` (n, c, h, w) into the preallocated C-contiguous ``out`` (n, k, oh, ow).
    Where the kernel has phases, ``compute.phases`` names them
    (`kernels.cpu.common.with_phases`).  ``prepare`` may keep ``w`` by reference rather than
    copy it (a copy per call costs more than some layers' whole compute): ``w`` must not
    change while the layer is in use.  Large workspaces come from
    `kernels.cpu.common.pooled_empty` (direct, im2col, Winograd; FFT and depthwise still
    allocate theirs), which reuses freed layers' memory, never a live layer's.
``workspace(spec) -> int``
    Bytes that ``prepare`` and one call allocate beyond input and output (an upper
    bound, tested against measured allocations), so that a harness can skip a problem
    before running out of memory.

Kernels that call BLAS next to ``prange`` regions issue single-threaded GEMMs from Numba's
threads (`kernels.cpu.common.single_threaded_blas`): one thread pool, not two fighting.
"""
