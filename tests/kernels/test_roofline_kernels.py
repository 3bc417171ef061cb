"""The two kernels that measure the roofline: what they compute, on tiny sizes (timings are
not checked: a test asserts what cannot vary)."""

import numba
import numpy as np
import pytest

from convbench import roofline


@pytest.mark.parametrize(("n", "chunks", "reps"), [(1, 1, 1), (1001, 3, 4), (64, 2, 1),
                                                   (7, 8, 2)])
def test_triad_computes_a_equals_b_plus_s_c(n, chunks, reps):
    rng = np.random.default_rng(n)
    b, c = rng.standard_normal(n), rng.standard_normal(n)
    a = np.full(n, np.nan)
    roofline.triad(a, b, c, 0.5, reps, chunks)
    # the last sweep's scalar is s + reps - 1; each element is one multiply and one add
    np.testing.assert_array_equal(a, b + (0.5 + reps - 1) * c)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_gemm_per_thread(dtype):
    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((threads, 33, 33)).astype(dtype)
    b = rng.standard_normal((threads, 33, 33)).astype(dtype)
    c = np.full_like(a, np.nan)
    roofline._gemm_each_thread(a, b, c)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(c, a @ b, rtol=tol, atol=tol)


def test_a_tiny_measurement_has_every_field():
    peaks, rates = roofline.measure_peak(1, sizes=(16, 32), repeats=1)
    assert set(peaks) == {"float32", "float64"} and all(v > 0 for v in peaks.values())
    assert set(rates["float32"]) == {"16", "32"}
    assert peaks["float64"] == max(rates["float64"].values())
    bw = roofline.measure_bandwidth(1, {"L2": 4096, "L3": 8192, "DRAM": 16384}, repeats=1)
    assert set(bw) == set(roofline.LEVELS) and all(v > 0 for v in bw.values())
