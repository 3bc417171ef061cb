"""What every kernel family promises, and the rules shared by its CPU and CUDA twins.

Every family module (``convbench_kernels.cpu.<family>``, ``convbench_kernels.cuda.<family>``)
offers three functions, which take a problem ``spec`` (any object with ConvSpec's attributes:
``n c h w k r s sh sw dh dw pads groups cg kg oh ow dtype direction``, and ``with_(**fields)``
giving a validated copy with fields changed).  The functions below describe the forward
direction; `convbench_kernels.directions` turns them into both gradients, whose ``prepare``
takes the weights (``bwd_d``: ``compute(dy, dx)``) or the input (``bwd_w``: ``compute(dy,
dw)``, all the work in the call):

``supports(spec) -> str | None``
    None when the family computes the problem, else the reason it does not.  Both devices use
    the same rule, defined here, so that a problem is never supported on one and refused on the
    other.
``prepare(w, spec) -> compute``
    Work done once per layer (filter transforms, workspace allocation, launch configuration);
    returns ``compute(x, out)``, which writes the convolution of the C-contiguous input ``x``
    (n, c, h, w) into the preallocated C-contiguous ``out`` (n, k, oh, ow).  Where the kernel
    has phases (transform, multiply, inverse; packing then GEMM), ``compute.phases`` names them
    (`with_phases`), so that a harness can time each one.  Phase names are one vocabulary:
    ``multiply`` is the stage that does the products (the GEMMs, the direct loops, the
    per-frequency sums); the others move or transform data (``pad``, ``pack``, ``input
    transform``, ``output transform``); the separable operator's stages are ``depthwise`` and
    ``pointwise``.  A family whose passes are fused (im2col packs and multiplies block by
    block on the CPU) has no phases.  ``prepare`` may keep ``w`` by
    reference rather than copy it (a copy per call costs more than some layers' whole compute):
    ``w`` must not change while the layer is in use.
``workspace(spec) -> int``
    Bytes that ``prepare`` and one call allocate beyond input and output: an upper bound, so
    that a harness can skip a problem before running out of memory.

Nothing here imports Numba's CUDA support: CUDA modules import this one, never a CPU module.
"""

from __future__ import annotations


def every_problem(spec) -> None:
    """``supports`` of a family that computes every valid problem (direct, im2col, FFT)."""
    return None


def winograd_3x3(spec) -> str | None:
    """``supports`` of Winograd F(m x m, 3 x 3): 3 x 3 filters, stride 1, dilation 1."""
    need = []
    if (spec.r, spec.s) != (3, 3):
        need.append(f"a 3x3 filter, got {spec.r}x{spec.s}")
    if (spec.sh, spec.sw) != (1, 1):
        need.append(f"stride 1, got {spec.sh}x{spec.sw}")
    if (spec.dh, spec.dw) != (1, 1):
        need.append(f"dilation 1, got {spec.dh}x{spec.dw}")
    return "winograd needs " + "; ".join(need) if need else None


def depthwise(spec) -> str | None:
    """``supports`` of depthwise convolution: groups == c (any channel multiplier k / c)."""
    if spec.groups != spec.c:
        return f"depthwise needs groups == c ({spec.c}), got groups={spec.groups}"
    return None


def separable(spec) -> str | None:
    """``supports`` of the separable operator: ``spec`` is the standard convolution it
    replaces, so groups == 1."""
    if spec.groups != 1:
        return f"separable replaces a convolution with groups == 1, got groups={spec.groups}"
    return None


def separable_weights(ws, spec):
    """``(w_depthwise, w_pointwise, m)`` checked against ``spec`` (the standard convolution
    replaced, groups == 1): shapes (c*m, 1, r, s) and (k, c*m, 1, 1), m the multiplier."""
    reason = separable(spec)
    if reason:
        raise ValueError(reason)
    w_dw, w_pw = ws
    c, k = spec.c, spec.k
    m = max(w_dw.shape[0] // c, 1)
    if w_dw.shape != (c * m, 1, spec.r, spec.s) or w_pw.shape != (k, c * m, 1, 1):
        raise ValueError(f"separable weights must be ({c * m}, 1, {spec.r}, {spec.s}) and "
                         f"({k}, {c * m}, 1, 1) for multiplier {m}, got {w_dw.shape} and "
                         f"{w_pw.shape}")
    return w_dw, w_pw, m



def with_phases(*phases):
    """``compute(x, out)`` running the named ``phases`` (``(name, fn(x, out))`` pairs) in order.

    ``compute.phases`` keeps them, so that a harness can time each one (the breakdown that
    explains a crossover: transforms against multiplies, packing against GEMM).  Each phase
    reads only ``x`` and what the phases before it wrote, so running one alone again gives
    its time without changing the result.
    """

    def compute(x, out):
        for _, phase in phases:
            phase(x, out)

    compute.phases = phases
    return compute
