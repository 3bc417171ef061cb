"""Winograd minimal-filtering transforms F(m, r), derived from interpolation points.

This is the one place where the matrices of the Winograd kernels come from (Lavin &
Gray 2015, "Fast Algorithms for Convolutional Neural Networks", section 4, and the
Toom-Cook construction with the point at infinity).  Pure NumPy; the CPU and CUDA
kernels take their matrices from `winograd_matrices`.

Construction
------------
F(m, r) computes m outputs of the 1-D correlation of an n = m + r - 1 input tile ``d``
with an r-tap filter ``g``::

    y = AT @ ((G @ g) * (BT @ d)),   y[i] = sum_k d[i + k] g[k]

Take n - 1 distinct finite points a_0 .. a_{n-2} and the point at infinity.  The
linear convolution of polynomials of degrees r - 1 and m - 1 has degree n - 1, so
Toom-Cook evaluates both factors at the n points (Vandermonde rows ``[1, a, a^2, ..]``;
at infinity the leading coefficient, ``[0, .., 0, 1]``), multiplies pointwise and
interpolates: ``conv(g, h) = C diag(E_r g) E_m h`` with ``C = E_n^-1``.  Correlation
is the transpose of that Toeplitz map, hence ``AT = E_m^T``, ``G = E_r`` and
``BT = C^T``.  Lagrange form of C with the point at infinity: row i of ``C^T`` holds
the coefficients of ``N_i(x) / f_i``, where ``N_i(x) = prod_{j != i} (x - a_j)`` and
``f_i = N_i(a_i)``; the infinity row holds those of ``prod_j (x - a_j)``.

Any triple (column e of AT, row e of G, row e of BT) may be rescaled by factors whose
product is 1.  The default ``scaling="G"`` keeps ``BT`` row i = ``sign(f_i) N_i``
(small integers for integer points) and divides G row i by ``|f_i|``: the filter
transform is done once in float64, so a non-dyadic factor such as 1/6 costs one
rounding there and none in the per-call input transform.  ``"BT"`` puts ``1/f_i``
into BT (the plain inverse Vandermonde), ``"AT"`` into AT; both are kept only to
measure that choice (table below).  Every matrix is computed in exact rational
arithmetic and rounded once to float64.

Resulting matrices (default scaling)
------------------------------------
F(2, 3), points 0, 1, -1, inf -- Lavin & Gray's matrices except that the infinity
triple has the opposite sign (their A^T column 3 and B^T row 3 are both negated)::

    AT = [1  1  1  0]      G = [ 1    0    0 ]      BT = [1  0 -1  0]
         [0  1 -1  1]          [1/2  1/2  1/2]           [0  1  1  0]
                               [1/2 -1/2  1/2]           [0 -1  1  0]
                               [ 0    0    1 ]           [0 -1  0  1]

F(4, 3), default points 0, 1, -1, 1/2, -2, inf (f_i = 1, 3, -1, -15/16, -15)::

    AT = [1  1  1   1    1   0]     G = [  1      0      0  ]
         [0  1 -1  1/2  -2   0]         [ 1/3    1/3    1/3 ]
         [0  1  1  1/4   4   0]         [ 1/3   -1/3    1/3 ]
         [0  1 -1  1/8  -8   1]         [16/15   8/15   4/15]
                                        [ 1/15  -2/15   4/15]
                                        [  0      0      1  ]

    BT = [1  -3/2   -2    3/2    1   0]
         [0   -1    1/2   5/2    1   0]
         [0   -1    5/2  -1/2   -1   0]
         [0    2     1    -2    -1   0]
         [0   1/2   -1   -1/2    1   0]
         [0    1   -3/2   -2    3/2  1]

With points 0, +-1, +-2 the same construction gives Lavin & Gray's printed F(4, 3) up to
the scaling of rows 1 and 2 (sign moved from G to BT); tests/kernels checks both.

F(6, 3), default points 0, 1, -1, 2, -2, 1/2, -1/2, inf (f_i = -1, -9/2, -9/2, 90, 90,
45/32, 45/32), NNPACK's F(6x6, 3x3) up to the sign of rows 1 and 2 (tests/kernels checks
it); 8 x 8 tiles, 64 multiplies per 36 outputs (324 directly)::

    AT = [1  1  1   1   1    1     1    0]     G = [  1      0      0  ]
         [0  1 -1   2  -2   1/2  -1/2   0]         [ 2/9    2/9    2/9 ]
         [0  1  1   4   4   1/4   1/4   0]         [ 2/9   -2/9    2/9 ]
         [0  1 -1   8  -8   1/8  -1/8   0]         [ 1/90   1/45   2/45]
         [0  1  1  16  16  1/16  1/16   0]         [ 1/90  -1/45   2/45]
         [0  1 -1  32 -32  1/32 -1/32   1]         [32/45  16/45   8/45]
                                                   [32/45 -16/45   8/45]
                                                   [  0      0      1  ]

    BT = [1    0   -21/4    0    21/4    0    -1   0]
         [0   -1    -1     17/4  17/4   -1    -1   0]
         [0    1    -1    -17/4  17/4    1    -1   0]
         [0   1/2   1/4   -5/2  -5/4     2     1   0]
         [0  -1/2   1/4    5/2  -5/4    -2     1   0]
         [0    2     4    -5/2   -5     1/2    1   0]
         [0   -2     4     5/2   -5    -1/2    1   0]
         [0   -1     0    21/4    0   -21/4    0   1]

All of AT and BT is dyadic, so exact in float32: the per-call transforms round only their
sums; the thirds, fifths and ninths are in G, applied once in float64.

Accuracy of the F(4, 3) point sets (float32)
--------------------------------------------
Measured with `measure_error` (the NumPy model `winograd_conv2d`: filter transform in
float64 rounded once, everything else in float32), n = 1, padding 1, x ~ N(0, 1),
w ~ N(0, 1/(9c)), against the float64 direct convolution; the largest of seeds 0, 1, 2.
rel L2 = ||out - ref|| / ||ref||, max rel = max|out - ref| / max|ref|::

    algorithm, finite points (+inf)   scaling   64->64 @56          256->256 @14
                                                rel L2   max rel    rel L2   max rel
    F(4,3)  0, 1, -1, 2, -2           G         1.78e-6  6.23e-6    2.22e-6  9.49e-6
    F(4,3)  0, 1, -1, 1/2, -2         G         1.17e-6  2.48e-6    1.51e-6  2.70e-6
    F(4,3)  0, 1, -1, 1/2, -1/2       G         1.74e-6  7.75e-6    2.44e-6  7.42e-6
    F(4,3)  0, 1, -1, 2, -2           BT        1.82e-6  6.51e-6    2.25e-6  8.06e-6
    F(4,3)  0, 1, -1, 2, -2           AT        1.81e-6  9.42e-6    2.23e-6  8.61e-6
    F(4,3)  0, 1, -1, 1/2, -2         BT        1.20e-6  2.49e-6    1.54e-6  2.71e-6
    F(4,3)  0, 1, -1, 1/2, -2         AT        1.19e-6  2.33e-6    1.54e-6  4.06e-6
    F(2,3)  0, 1, -1                  G or BT   2.51e-7  4.06e-7    4.29e-7  7.41e-7
    direct  (float32 im2col GEMM)               2.82e-7  5.59e-7    2.98e-7  4.03e-7

With ReLU'd inputs (x >= 0) the two F(4, 3) sets give 9.5e-7 / 2.0e-6 (1/2, -2) and
1.5e-6 / 6.6e-6 (+-2) at 64 @56.  So the default F(4, 3) points are 0, 1, -1, 1/2, -2:
1.5x smaller L2 error and 2.5-3.5x smaller max error than Lavin & Gray's 0, +-1, +-2, as
Barabasz et al. (2020, "Error analysis and improving the accuracy of Winograd
convolution for deep neural networks") also found; 0, 1, -1, 2, -1/2 (its mirror image)
measures the same.  The scaling matters little (under 3 % in L2); "G" is best or tied
and keeps the per-call input transform free of non-dyadic constants.

Accuracy of the F(6, 3) point sets (float32)
--------------------------------------------
Measured as above (`measure_error`, seeds 0, 1, 2, the largest), in a later run with NumPy
2.4 and OpenBLAS 0.3.31, whose float32 sums run in another order than the table above:
the F(4, 3) and F(2, 3) rows are re-measured in the same run, and rows compare within one
table only (Lavin & Gray's F(4, 3) points measure 1.15e-6 / 3.45e-6 at 64 @56 here, still
1.5x / 2.8x the default's)::

    algorithm, finite points (+inf)      scaling   64->64 @56          256->256 @14
                                                   rel L2   max rel    rel L2   max rel
    F(6,3)  0, +-1, +-2, +-1/2           G         2.61e-6  6.37e-6    2.81e-6  7.49e-6
    F(6,3)  0, +-1, +-2, +-1/2           BT        2.75e-6  7.51e-6    2.89e-6  6.17e-6
    F(6,3)  0, +-1, +-2, +-1/2           AT        2.68e-6  5.78e-6    2.92e-6  7.71e-6
    F(6,3)  0, +-1, +-1/2, 2, -5/2       G         2.94e-6  8.26e-6    3.09e-6  7.05e-6
    F(6,3)  0, +-1, 1/2, 2, -5/2, -2/5   G         3.00e-6  9.26e-6    3.23e-6  8.21e-6
    F(6,3)  0, +-1, +-1/2, 2, -3/2       G         3.12e-6  7.03e-6    3.31e-6  7.40e-6
    F(6,3)  0, +-1, 1/2, 5/2, -2, -2/5   G         3.14e-6  8.24e-6    3.33e-6  8.60e-6
    F(6,3)  0, +-1, +-1/2, +-3/2         G         3.39e-6  7.57e-6    3.62e-6  7.89e-6
    F(6,3)  0, +-1, +-5/2, +-2/5         G         3.39e-6  9.97e-6    3.68e-6  9.71e-6
    F(6,3)  0, +-1, 1/2, 3, -2, -1/3     G         3.80e-6  1.07e-5    4.12e-6  1.10e-5
    F(6,3)  0, +-1, 5/2, 2/5, -3, -1/3   G         4.55e-6  1.69e-5    4.87e-6  1.39e-5
    F(6,3)  0, +-1, +-1/2, 2, -4         G         4.85e-6  1.82e-5    4.96e-6  1.62e-5
    F(6,3)  0, +-1, +-1/2, +-4/3         G         4.99e-6  1.00e-5    5.28e-6  9.02e-6
    F(6,3)  0, +-1, +-3, +-1/3           G         5.22e-6  1.70e-5    5.76e-6  1.80e-5
    F(6,3)  0, +-1, +-2/3, +-3/2         G         5.46e-6  7.90e-6    5.81e-6  9.27e-6
    F(6,3)  0, +-1, +-2, 1/2, -3/2       G         1.90e-5  7.86e-5    1.97e-5  6.56e-5
    F(6,3)  0, +-1, +-1/2, 2, -1/4       G         2.00e-5  1.24e-4    2.05e-5  1.06e-4
    F(6,3)  0, +-1, +-1/2, +-3/4         G         2.02e-5  6.07e-5    2.13e-5  6.51e-5
    F(6,3)  0, +-1, +-1/2, +-2/3         G         3.49e-5  1.24e-4    3.70e-5  1.96e-4
    F(6,3)  0, +-1, +-2, +-3/2           G         4.50e-5  1.43e-4    4.61e-5  1.77e-4
    F(6,3)  0, +-1, +-2, 1/2, 3/2        G         5.92e-5  2.12e-4    6.22e-5  2.60e-4
    F(6,3)  0, +-1, +-2, +-3             G         1.39e-4  6.67e-4    1.44e-4  7.95e-4
    F(6,3)  0, +-1, +-1/2, +-1/4         G         1.50e-4  9.83e-4    1.72e-4  1.12e-3
    F(4,3)  0, 1, -1, 1/2, -2            G         7.74e-7  1.22e-6    8.52e-7  1.44e-6
    F(2,3)  0, 1, -1                     G         2.64e-7  4.06e-7    5.00e-7  7.41e-7

21 point sets: those built from 1/2, 2, 3/2, 2/3 and their kind, and the best of all 4845
choices of four more points (with 0, +-1) from +-{1/2, 2, 1/3, 3, 2/3, 3/2, 1/4, 4, 3/4, 4/3,
5/2, 2/5} by a cheap bound, max_i sum_e |AT[i, e]| |G[e]|_1 |BT[e]|_1 (1-D), which ranks
NNPACK's set second to +-5/2, +-2/5: measured, that one and its neighbours lose (non-dyadic
points put rounding into BT).  With ReLU'd inputs at 64 @56: 1.95e-6 / 5.43e-6
(+-2, +-1/2), 2.28e-6 / 5.77e-6 (+-1/2, 2, -3/2), 2.54e-6 / 5.42e-6 (+-1/2, +-3/2).  So the
default F(6, 3) points are NNPACK's 0, +-1, +-2, +-1/2 (Barabasz et al. 2020 discuss how
the choice of points sets the error): the smallest L2 error of every set measured, and a
max error within 21 % of the smallest on each layer (the three scalings differ by under 6 %
in L2 and 21 % at the largest element, each best somewhere; "G" keeps BT dyadic).  F(6, 3)
errs about 3.4x F(4, 3) in L2 and 5x at the largest element; max rel on the ResNet-50 3x3
layers, the largest of seeds 0-2: 6.37e-6 (64 @56), 7.43e-6 (128 @28), 7.49e-6 (256 @14),
6.51e-6 (512 @7).  The CPU kernel's own errors are 1.6-2.5x these, as F(4, 3)'s are 2-4x
its model's (`convbench_kernels.cpu.winograd`).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

#: Default finite points per output tile size m (r = 3); infinity is always added.
DEFAULT_POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, Fraction(1, 2), -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}

SCALINGS = ("G", "BT", "AT")


def _poly_from_roots(roots):
    """Coefficients (lowest degree first) of prod (x - a) over ``roots``, exact."""
    coef = [Fraction(1)]
    for a in roots:
        nxt = [Fraction(0)] * (len(coef) + 1)
        for i, c in enumerate(coef):
            nxt[i + 1] += c          # x * c x^i
            nxt[i] -= a * c          # -a * c x^i
        coef = nxt
    return coef


def winograd_matrices_exact(m, r=3, points=None, scaling="G"):
    """The transforms of F(m, r) as exact rationals (lists of lists of Fraction).

    Parameters
    ----------
    m : int
        Outputs per tile (per dimension).
    r : int
        Filter taps.
    points : sequence of n - 1 distinct numbers, optional
        The finite interpolation points, n = m + r - 1; infinity is added last.
        Floats are taken at their exact binary value.  Default `DEFAULT_POINTS[m]`.
    scaling : {"G", "BT", "AT"}
        Which matrix receives the Lagrange denominators ``1/|f_i|`` (see module doc).

    Returns
    -------
    AT (m x n), G (n x r), BT (n x n) : list of lists of Fraction
    """
    if m < 1 or r < 1:
        raise ValueError(f"F(m, r) needs m >= 1 and r >= 1, got m={m}, r={r}")
    n = m + r - 1
    if points is None:
        if m not in DEFAULT_POINTS or r != 3:
            raise ValueError(f"no default points for F({m}, {r}); pass {n - 1} points")
        points = DEFAULT_POINTS[m]
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points, got {points!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")

    AT = [[Fraction(0)] * n for _ in range(m)]
    G = [[Fraction(0)] * r for _ in range(n)]
    BT = [[Fraction(0)] * n for _ in range(n)]
    for i, a in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        f = Fraction(1)
        for b in others:
            f *= a - b
        num = _poly_from_roots(others)  # degree n - 2: the last BT column stays 0
        col = [a**p for p in range(m)]
        row = [a**p for p in range(r)]
        sign = 1 if f > 0 else -1
        if scaling == "G":
            row = [v / abs(f) for v in row]
            num = [sign * v for v in num]
        elif scaling == "BT":
            num = [v / f for v in num]
        else:
            col = [v / f for v in col]
        for p in range(m):
            AT[p][i] = col[p]
        G[i] = row
        BT[i][: n - 1] = num
    # the point at infinity: leading coefficients, interpolated by prod_j (x - a_j)
    AT[m - 1][n - 1] = Fraction(1)
    G[n - 1][r - 1] = Fraction(1)
    BT[n - 1] = _poly_from_roots(pts)
    return AT, G, BT


def winograd_matrices(m, r=3, points=None, scaling="G"):
    """The transforms of F(m, r) as float64 arrays (see `winograd_matrices_exact`).

    Returns
    -------
    AT : numpy.ndarray (m, n)
    G : numpy.ndarray (n, r)
    BT : numpy.ndarray (n, n)
        With ``y = AT @ ((G @ g) * (BT @ d))`` the correlation of ``d`` (n) with ``g`` (r),
        and ``Y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T`` in 2-D.
    """
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=np.float64)
                 for mat in winograd_matrices_exact(m, r, points, scaling))


def multiply_count(m, r=3):
    """Multiplications per m x m output tile: (Winograd F(m x m, r x r), direct).

    The Winograd count is the elementwise products ``(m + r - 1)^2`` (the transforms'
    multiplications by constants are not counted, as in Lavin & Gray); direct
    correlation needs ``m^2 r^2``.
    """
    return (m + r - 1) ** 2, m * m * r * r


def winograd_conv2d(x, w, m, points=None, pads=(0, 0, 0, 0), dtype=None, scaling="G"):
    """Stride-1, dilation-1 convolution by F(m x m, 3 x 3) in plain NumPy.

    A slow model of the kernels, used to measure the error of a point set: the filter
    transform is done in float64 and rounded once; input transform, products, channel
    sums and output transform are done in ``dtype`` (default: x's dtype).

    Parameters
    ----------
    x : numpy.ndarray (n, c, h, w)
    w : numpy.ndarray (k, c, 3, 3)
    m : int
    points, scaling : see `winograd_matrices`
    pads : (top, bottom, left, right)
    dtype : numpy dtype, optional

    Returns
    -------
    numpy.ndarray (n, k, oh, ow) of ``dtype``
    """
    dtype = np.dtype(dtype or x.dtype)
    r = w.shape[2]
    AT, G, BT = winograd_matrices(m, r, points, scaling)
    nt = m + r - 1
    n, c, h, wd = x.shape
    k = w.shape[0]
    pt, pb, pl, pr = pads
    oh, ow = h + pt + pb - r + 1, wd + pl + pr - r + 1
    th, tw = -(-oh // m), -(-ow // m)
    xp = np.zeros((n, c, th * m + r - 1, tw * m + r - 1), dtype=dtype)
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    U = np.einsum("ea,kcab,fb->efck", G, w.astype(np.float64), G).astype(dtype)  # (nt, nt, c, k)
    i = np.arange(th)[:, None] * m + np.arange(nt)[None, :]  # (th, nt) rows of each tile
    j = np.arange(tw)[:, None] * m + np.arange(nt)[None, :]  # (tw, nt)
    d = xp[:, :, i[:, :, None, None], j[None, None, :, :]]  # (n, c, th, nt, tw, nt)
    BTd = BT.astype(dtype)
    V = np.einsum("ea,ncyaxb,fb->efnyxc", BTd, d, BTd)  # (nt, nt, n, th, tw, c)
    M = V @ U[:, :, None, None]  # (nt, nt, n, th, tw, k)
    ATd = AT.astype(dtype)
    Y = np.einsum("pe,efnyxk,qf->nkypxq", ATd, M, ATd)  # (n, k, th, m, tw, m)
    return Y.reshape(n, k, th * m, tw * m)[:, :, :oh, :ow]


def measure_error(m, points=None, scaling="G", c=64, size=56, seed=0, relu=False):
    """Float32 error of F(m x m, 3 x 3) against the float64 direct convolution.

    One random ResNet-like layer: n = 1, c -> c channels, size x size, padding 1,
    x ~ N(0, 1) (``relu``: its positive part), w ~ N(0, 1 / (9 c)).

    Returns
    -------
    (rel_l2, max_rel) : (float, float)
        ``||out - ref||_2 / ||ref||_2`` and ``max|out - ref| / max|ref|``.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, size, size)).astype(np.float32)
    if relu:
        x = np.maximum(x, 0)
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    got = winograd_conv2d(x, w, m, points, pads=(1, 1, 1, 1), dtype=np.float32,
                          scaling=scaling).astype(np.float64)
    ref = _direct64(x.astype(np.float64), w.astype(np.float64), pad=1)
    err = got - ref
    return (float(np.linalg.norm(err) / np.linalg.norm(ref)),
            float(np.abs(err).max() / np.abs(ref).max()))


def _direct64(x, w, pad):
    """Float64 stride-1 correlation with symmetric padding (9 shifted GEMMs)."""
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - r + 1, wd + 2 * pad - s + 1
    out = np.zeros((n, k, oh, ow))
    for a in range(r):
        for b in range(s):
            out += np.einsum("nchw,kc->nkhw", xp[:, :, a:a + oh, b:b + ow], w[:, :, a, b])
    return out
