"""CUDA kernels (numba.cuda), imported only when asked for.

Nothing outside this package imports numba.cuda at module level, so that
``import convbench_kernels`` works on a machine without numba-cuda.  Each family module
mirrors its CPU twin in ``convbench_kernels.cpu``: ``supports(spec)`` (the rule of
`convbench_kernels.contract` both share), ``prepare(w, spec) -> compute`` where ``w`` is a host
array and ``compute(x, out)`` takes device arrays and only launches kernels (every launch
built in ``prepare``), and ``launches(spec, sms=None)``: those launches' grids and blocks, a
pure function of the problem and the SM count.
``convbench_kernels.cuda.gemm`` is the register-blocked shared-memory GEMM the other families
build on; ``convbench_kernels.cuda.launch`` holds what every family needs to shape its
launches (the SMs to fill, blocks per launch, the integer type of index arithmetic).
"""
