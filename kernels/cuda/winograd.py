"""Winograd F(m x m, 3 x 3) convolution on the GPU: two transform kernels around a batched GEMM.

The CUDA twin of `convbench_kernels.cpu.winograd` (Lavin & Gray 2015, section 4), same matrices
(`convbench_kernels.winograd_math.winograd_matrices`: F(2, 3) points 0, +-1; F(4, 3) points
0, +-1, 1/2, -2; F(6, 3) points 0, +-1, +-2, +-1/2) and same supported problems (3 x 3,
stride 1, dilation 1; any padding, groups, batch, float32 and float64).  ``winograd_f23`` is
m = 2, ``winograd_f43`` m = 4, ``winograd_f63`` m = 6.

Layout (nt = m + 2, ne = nt^2, tiles = n * ceil(oh/m) * ceil(ow/m), over all images)
-----------------------------------------------------------------------------------
``U`` (ne, groups, kg, cg)
    Filter transform ``G g G^T``, computed on the host in float64 in `prepare`, rounded
    once to the dtype and copied to the device.
``V`` (ne, groups, cg, tiles)
    Input transform ``BT d BT^T`` (kernel ``input_transform``), one thread per (channel, tile),
    consecutive threads on consecutive tiles (coalesced writes).  The patch is read straight
    from ``x`` with bounds checks, so padding and the partial tiles at the right and bottom
    edges read zeros without a padded copy of the input.
``M`` (ne, groups, kg, tiles)
    ``M[e, g] = U[e, g] @ V[e, g]``: one batched GEMM over the ne * groups planes.
``out``
    Output transform ``AT M AT^T`` (kernel ``output_transform``), one thread per (output
    channel, tile), writing only the part of each tile inside (oh, ow).

The transform matrices are passed to the kernels as device arrays of the dtype (copied
once in `prepare`).  Kernels are compiled per (nt, dtype) (`_transform_kernels`): the
local arrays need compile-time shapes and dtype, and every sum stays in the input dtype.

The GEMM is `convbench_kernels.cuda.gemm`'s, one launch batched over the ne * groups planes,
planned in `prepare`.
"""

from functools import cache, partial

import numpy as np
from numba import cuda

from convbench_kernels.contract import winograd_3x3 as supports
from convbench_kernels.contract import with_phases
from convbench_kernels.cuda.gemm import launches as gemm_launches
from convbench_kernels.cuda.gemm import plan
from convbench_kernels.cuda.launch import grid_1d, index_type, launcher, splitter
from convbench_kernels.winograd_math import winograd_matrices

__all__ = ["supports", "prepare", "prepare_f23", "prepare_f43", "prepare_f63", "workspace",
           "workspace_f23", "workspace_f43", "workspace_f63", "launches", "launches_f23",
           "launches_f43", "launches_f63"]

#: Threads per block of the transform kernels (local arrays per thread: 2 x 36 values in the
#: input transform and 36 + 24 in the output transform at F(4, 3), 2 x 64 and 64 + 48 at
#: F(6, 3); no shared memory).
TRANSFORM_THREADS = 128


def _scalar_type(dtype):
    """The NumPy scalar type of ``dtype``: a cast function and a local array dtype in kernels
    (and in the simulator, where kernels run as Python)."""
    return np.dtype(dtype).type


# ------------------------------------------------------------------------ transforms


@cache
def _transform_kernels(nt, dtype, ix):
    """(input transform, output transform) kernels for tiles of nt = m + 2 and ``dtype``,
    splitting flat indices in ``ix`` (`convbench_kernels.cuda.launch.index_type`)."""
    dt = _scalar_type(dtype)
    split = splitter(ix)
    NT = nt
    MO = nt - 2

    @cuda.jit(device=True, inline="always")
    def times_t(A, X, Y, rows, inner, cols):
        """Y[:cols, :rows] = (A[:rows, :inner] X[:inner, :cols])^T (local arrays).  Twice,
        it gives a two-sided transform: ``(A (A X)^T)^T = A X A^T``."""
        for r in range(rows):
            for j in range(cols):
                s = dt(0)
                for a in range(inner):
                    s += A[r, a] * X[a, j]
                Y[j, r] = s

    @cuda.jit
    def input_transform(x, BT, pt, pl, th, tw, V):
        """V[e1*nt + e2, g, cl, t] = (BT d BT^T)[e1, e2], d the patch of tile t, channel
        g*cg + cl; one thread per (channel, tile)."""
        i = cuda.grid(1)
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        cg = V.shape[2]
        tiles = V.shape[3]
        if i >= c * tiles:
            return
        ch, t = split(i, tiles)
        b, rem = split(t, th * tw)
        ty, tx = split(rem, tw)
        y0 = ty * MO - pt
        x0 = tx * MO - pl
        d = cuda.local.array((NT, NT), dt)
        for a in range(NT):
            yy = y0 + a
            for j in range(NT):
                xx = x0 + j
                if yy >= 0 and yy < h and xx >= 0 and xx < w:
                    d[a, j] = x[b, ch, yy, xx]
                else:
                    d[a, j] = dt(0)
        e = cuda.local.array((NT, NT), dt)
        times_t(BT, d, e, NT, NT, NT)  # (BT d)^T
        times_t(BT, e, d, NT, NT, NT)  # BT d BT^T, back into d
        g, cl = split(ch, cg)
        for r in range(NT):
            for q in range(NT):
                V[r * NT + q, g, cl, t] = d[r, q]

    @cuda.jit
    def output_transform(M, AT, th, tw, out):
        """out tile = AT Mtile AT^T inside (oh, ow); one thread per (output channel, tile)."""
        i = cuda.grid(1)
        k = out.shape[1]
        oh, ow = out.shape[2], out.shape[3]
        kg = M.shape[2]
        tiles = M.shape[3]
        if i >= k * tiles:
            return
        ko, t = split(i, tiles)
        g, kl = split(ko, kg)
        b, rem = split(t, th * tw)
        ty, tx = split(rem, tw)
        y0 = ty * MO
        x0 = tx * MO
        mt = cuda.local.array((NT, NT), dt)
        for r in range(NT):
            for q in range(NT):
                mt[r, q] = M[r * NT + q, g, kl, t]
        f = cuda.local.array((NT, MO), dt)
        times_t(AT, mt, f, MO, NT, NT)  # (AT Mtile)^T
        times_t(AT, f, mt, MO, NT, MO)  # AT Mtile AT^T, into mt[:MO, :MO]
        for p in range(MO):
            oy = y0 + p
            if oy < oh:
                for q in range(MO):
                    ox = x0 + q
                    if ox < ow:
                        out[b, ko, oy, ox] = mt[p, q]

    return input_transform, output_transform


def filter_transform(w, spec, G):
    """U (ne, groups, kg, cg) = G w G^T per filter, in float64, rounded once to spec.dtype."""
    nt = G.shape[0]
    wg = np.asarray(w, dtype=np.float64).reshape(spec.groups, spec.kg, spec.cg, 3, 3)
    U = np.einsum("ea,gkcab,fb->efgkc", G, wg, G)  # (nt, nt, groups, kg, cg)
    return np.ascontiguousarray(U.reshape(nt * nt, spec.groups, spec.kg, spec.cg),
                                dtype=spec.dtype)


def _tiles(spec, m):
    """Output tiles over all images, and per image along each axis."""
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    return spec.n * th * tw, th, tw


def _gemm_shapes(spec, m):
    """Shapes of the GEMM's U, V, M: ne * groups planes of (kg, cg) @ (cg, tiles)."""
    planes, tiles = (m + 2) ** 2 * spec.groups, _tiles(spec, m)[0]
    return (planes, spec.kg, spec.cg), (planes, spec.cg, tiles), (planes, spec.kg, tiles)


def launches(spec, m=4, sms=None):
    """``[(kernel, grid, block)]``: the launches of one call on ``spec`` with tiles of ``m``
    (``sms``: SMs the GEMM fills, default the device's)."""
    tiles = _tiles(spec, m)[0]
    return ([("input_transform", *grid_1d(spec.c * tiles, TRANSFORM_THREADS, sms))]
            + gemm_launches(_gemm_shapes(spec, m)[2], sms)
            + [("output_transform", *grid_1d(spec.k * tiles, TRANSFORM_THREADS, sms))])


launches_f23 = partial(launches, m=2)
launches_f43 = partial(launches, m=4)
launches_f63 = partial(launches, m=6)


def workspace(spec, m=4):
    """Device bytes `prepare` allocates beyond x and out: U, V, M and the matrices."""
    ne = (m + 2) ** 2
    tiles = spec.n * -(-spec.oh // m) * -(-spec.ow // m)
    elems = ne * (spec.k * spec.cg + (spec.c + spec.k) * tiles) + ne + m * (m + 2)
    return spec.itemsize * elems


workspace_f23 = partial(workspace, m=2)
workspace_f43 = partial(workspace, m=4)
workspace_f63 = partial(workspace, m=6)


def prepare(w, spec, m=4):
    """Transform the filters, allocate V and M on the device, return ``compute(x, out)``.

    Parameters
    ----------
    w : numpy.ndarray (k, cg, 3, 3), host
    spec : ConvSpec-like, supported (see `supports`)
    m : int
        Output tile size: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3), 6 for F(6x6, 3x3).

    Returns
    -------
    callable
        ``compute(x, out)`` on device arrays x (n, c, h, w) and out (n, k, oh, ow), with
        phases "input transform", "multiply", "output transform".  Launches on the default
        stream, no synchronization.

    Launch configurations (`launches`, built here once): the transforms run
    TRANSFORM_THREADS threads per block (fewer for a small layer:
    `convbench_kernels.cuda.launch.threads_for`) over c * tiles (input) and k * tiles (output)
    threads; the GEMM as `convbench_kernels.cuda.gemm` picks.
    """
    reason = supports(spec)
    if reason is not None:
        raise ValueError(reason)
    dtype = np.dtype(spec.dtype)
    AT, G, BT = winograd_matrices(m, 3)
    nt = m + 2
    ne = nt * nt
    groups, cg, kg = spec.groups, spec.cg, spec.kg
    pt, _, pl, _ = spec.pads
    tiles, th, tw = _tiles(spec, m)

    U = cuda.to_device(filter_transform(w, spec, G))
    V = cuda.device_array((ne, groups, cg, tiles), dtype=dtype)
    M = cuda.device_array((ne, groups, kg, tiles), dtype=dtype)
    d_BT = cuda.to_device(np.ascontiguousarray(BT, dtype=dtype))
    d_AT = cuda.to_device(np.ascontiguousarray(AT, dtype=dtype))
    # the GEMM's view: ne * groups planes, (kg, cg) @ (cg, tiles)
    U3 = U.reshape(ne * groups, kg, cg)
    V3 = V.reshape(ne * groups, cg, tiles)
    M3 = M.reshape(ne * groups, kg, tiles)

    in_kernel, out_kernel = _transform_kernels(nt, dtype,
                                               index_type(max(spec.c, spec.k) * tiles))
    (_, g_in, b_in), _, (_, g_out, b_out) = launches(spec, m)
    in_launch = launcher(in_kernel, g_in, b_in)
    out_launch = launcher(out_kernel, g_out, b_out)
    mm = plan(*_gemm_shapes(spec, m))

    def input_transform(x, out):
        in_launch(x, d_BT, pt, pl, th, tw, V)

    def multiply(x, out):
        mm(U3, V3, M3)

    def output_transform(x, out):
        out_launch(M, d_AT, th, tw, out)

    return with_phases(("input transform", input_transform), ("multiply", multiply),
                       ("output transform", output_transform))


prepare_f23 = partial(prepare, m=2)
prepare_f23.__doc__ = "`prepare` for F(2x2, 3x3) (registry name ``winograd_f23``)."
prepare_f43 = partial(prepare, m=4)
prepare_f43.__doc__ = "`prepare` for F(4x4, 3x3) (registry name ``winograd_f43``)."
prepare_f63 = partial(prepare, m=6)
prepare_f63.__doc__ = "`prepare` for F(6x6, 3x3) (registry name ``winograd_f63``)."
