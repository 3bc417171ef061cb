"""The Winograd transforms of `convbench_kernels.winograd_math` against the paper and the
definition."""

from fractions import Fraction

import numpy as np
import pytest

from convbench_kernels.reference import reference_conv2d
from convbench_kernels.winograd_math import (
    DEFAULT_POINTS,
    SCALINGS,
    measure_error,
    multiply_count,
    winograd_conv2d,
    winograd_matrices,
    winograd_matrices_exact,
)

# Lavin & Gray 2015, section 4.1 (F(2, 3)) and 4.2 (F(4, 3)), as printed.
LAVIN_F23 = {
    "AT": [[1, 1, 1, 0], [0, 1, -1, -1]],
    "G": [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    "BT": [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
}
LAVIN_F43 = {
    "AT": [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    "G": [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
          [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    "BT": [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
}
# NNPACK's F(6x6, 3x3) (points 0, 1, -1, 2, -2, 1/2, -1/2, inf; also the output of Lavin's
# wincnn for those points), as NNPACK's transforms apply them.
NNPACK_F63 = {
    "AT": [[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
           [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0], [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
           [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0], [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]],
    "G": [[1, 0, 0], [-2 / 9, -2 / 9, -2 / 9], [-2 / 9, 2 / 9, -2 / 9],
          [1 / 90, 1 / 45, 2 / 45], [1 / 90, -1 / 45, 2 / 45], [32 / 45, 16 / 45, 8 / 45],
          [32 / 45, -16 / 45, 8 / 45], [0, 0, 1]],
    "BT": [[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0], [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
           [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0], [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
           [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0], [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
           [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0], [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]],
}
F63_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))

# (m, finite points): the defaults, the two F(4, 3) sets measured, and a few more
POINT_SETS = [
    (2, (0, 1, -1)),
    (4, DEFAULT_POINTS[4]),
    (4, (0, 1, -1, 2, -2)),
    (4, (0, 1, -1, Fraction(1, 2), Fraction(-1, 2))),
    (3, (0, 1, -1, 2)),
    (6, DEFAULT_POINTS[6]),
    (6, (0, 1, -1, Fraction(1, 2), Fraction(-1, 2), Fraction(3, 2), Fraction(-3, 2))),
]


def _triples(AT, G, BT):
    """The per-element products AT[:, e] x G[e] x BT[e], invariant under row scaling."""
    return np.einsum("ie,ej,ek->eijk", np.asarray(AT, float), np.asarray(G, float),
                     np.asarray(BT, float))


def _correlate(d, g):
    m = len(d) - len(g) + 1
    return np.array([d[i:i + len(g)] @ g for i in range(m)])


def test_f23_is_lavin_gray_with_the_infinity_sign_flipped():
    AT, G, BT = winograd_matrices(2)
    flip = np.diag([1.0, 1.0, 1.0, -1.0])  # their A^T column 3 and B^T row 3 are negated
    assert np.array_equal(G, np.array(LAVIN_F23["G"]))
    assert np.array_equal(AT, np.array(LAVIN_F23["AT"], float) @ flip)
    assert np.array_equal(BT, flip @ np.array(LAVIN_F23["BT"], float))


def test_f43_on_lavin_points_is_lavin_gray_up_to_row_scaling():
    ours = _triples(*winograd_matrices(4, points=(0, 1, -1, 2, -2)))
    theirs = _triples(LAVIN_F43["AT"], LAVIN_F43["G"], LAVIN_F43["BT"])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)


def test_f63_is_nnpack_up_to_row_scaling():
    assert DEFAULT_POINTS[6] == F63_POINTS
    ours = _triples(*winograd_matrices(6))
    theirs = _triples(NNPACK_F63["AT"], NNPACK_F63["G"], NNPACK_F63["BT"])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-14)


def test_f63_matrices_are_the_exact_construction_rounded_once():
    exact = winograd_matrices_exact(6)
    for got, want in zip(winograd_matrices(6), exact, strict=True):
        assert np.array_equal(got, np.array([[float(v) for v in row] for row in want]))
    AT, G, BT = exact
    assert (len(AT), len(AT[0]), len(G), len(BT)) == (6, 8, 8, 8)
    # dyadic points: AT and BT are exact in float32 (no rounding in the per-call transforms),
    # only G (applied once, in float64) holds thirds, fifths and ninths
    for mat in (AT, BT):
        assert all(v.denominator & (v.denominator - 1) == 0 for row in mat for v in row)
        f = np.array([[float(v) for v in row] for row in mat])
        assert np.array_equal(f.astype(np.float32).astype(np.float64), f)
    assert G[1] == [Fraction(2, 9)] * 3 and G[5] == [Fraction(32, 45), Fraction(16, 45),
                                                     Fraction(8, 45)]


def test_printed_matrices_satisfy_the_identity():
    # guards the transcriptions above, on which the tests before rely
    rng = np.random.default_rng(1)
    for mats in (LAVIN_F23, LAVIN_F43, NNPACK_F63):
        AT, G, BT = (np.array(mats[k], float) for k in ("AT", "G", "BT"))
        d, g = rng.standard_normal(BT.shape[0]), rng.standard_normal(3)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), _correlate(d, g), atol=1e-13)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize(("m", "points"), POINT_SETS)
def test_identity_is_exact_in_rationals(m, points, scaling):
    # sum_e AT[i, e] G[e, q] BT[e, p] must be 1 where p == i + q, else 0: exactly
    AT, G, BT = winograd_matrices_exact(m, 3, points, scaling)
    n = m + 2
    for i in range(m):
        for q in range(3):
            for p in range(n):
                got = sum(AT[i][e] * G[e][q] * BT[e][p] for e in range(n))
                assert got == (1 if p == i + q else 0), (i, q, p, got)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize(("m", "points"), POINT_SETS)
def test_identity_in_float64(m, points, scaling):
    AT, G, BT = winograd_matrices(m, 3, points, scaling)
    assert AT.shape == (m, m + 2) and G.shape == (m + 2, 3) and BT.shape == (m + 2, m + 2)
    assert AT.dtype == G.dtype == BT.dtype == np.float64
    rng = np.random.default_rng(m)
    for _ in range(20):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = _correlate(d, g)
        got = AT @ ((G @ g) * (BT @ d))
        assert np.abs(got - want).max() <= 1e-13 * np.abs(d).max() * np.abs(g).max()


def test_default_scaling_keeps_integer_points_integer_in_bt():
    # the Lagrange denominators 1/|f_i| go to G, so BT of integer points holds integers
    _, _, BT = winograd_matrices(4, points=(0, 1, -1, 2, -2))
    assert np.array_equal(BT, np.round(BT))
    _, G, _ = winograd_matrices(4, points=(0, 1, -1, 2, -2))
    assert np.allclose(G[1], [1 / 6] * 3) and np.allclose(G[3], [1 / 24, 1 / 12, 1 / 6])


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_model_2d_matches_reference(m, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    pads = (1, 2, 0, 1)
    got = winograd_conv2d(x, w, m, pads=pads)
    ref = reference_conv2d(x, w, pads=pads)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert got.dtype == dtype and got.shape == ref.shape
    assert err < (1e-13 if dtype == np.float64 else 2e-5)


def test_default_f43_points_beat_lavin_points_in_float32():
    ours = measure_error(4, c=32, size=16)
    lavin = measure_error(4, points=(0, 1, -1, 2, -2), c=32, size=16)
    f23 = measure_error(2, c=32, size=16)
    assert ours[0] < lavin[0] and ours[1] < lavin[1]
    assert f23[0] < ours[0] < 1e-5


def test_default_f63_points_beat_the_alternatives_in_float32():
    ours = measure_error(6, c=32, size=16)
    halves = measure_error(6, points=(0, 1, -1, Fraction(1, 2), Fraction(-1, 2),
                                      Fraction(3, 2), Fraction(-3, 2)), c=32, size=16)
    integers = measure_error(6, points=(0, 1, -1, 2, -2, 3, -3), c=32, size=16)
    f43 = measure_error(4, c=32, size=16)
    assert ours[0] < halves[0] and 10 * ours[0] < integers[0] and 10 * ours[1] < integers[1]
    assert f43[0] < ours[0] < 1e-5


def test_multiply_counts():
    assert multiply_count(2) == (16, 36)  # per 4 outputs: 2.25x fewer
    assert multiply_count(4) == (36, 144)  # per 16 outputs: 4x fewer
    w, d = multiply_count(2)
    assert d / w == 2.25
    w, d = multiply_count(4)
    assert d / w == 4.0
    assert multiply_count(6) == (64, 324)  # per 36 outputs: 5.06x fewer
    w, d = multiply_count(6)
    assert d / w == 5.0625 and w / 36 == 16 / 9  # 1.78 multiplies an output


@pytest.mark.parametrize(
    ("args", "message"),
    [((4, 3, (0, 1, -1, 2)), "needs 5 distinct"), ((4, 3, (0, 1, -1, 2, 2)), "needs 5 distinct"),
     ((6, 3, (0, 1, -1, 2, -2, 3)), "needs 7 distinct"),
     ((5, 3, None), "no default points"), ((2, 3, None, "B"), "scaling must be")],
)
def test_bad_arguments_name_what_is_allowed(args, message):
    with pytest.raises(ValueError, match=message):
        winograd_matrices(*args)
