"""Pieces shared by the CPU kernels."""

from numba import njit, prange
from threadpoolctl import ThreadpoolController

_BLAS = []


def single_threaded_blas():
    """A context in which BLAS runs on one thread, for GEMMs issued from Numba's threads.

    Two thread pools on few cores fight: after a ``prange`` region Numba's OpenMP workers
    spin while OpenBLAS' worker waits for a core, and a 0.5 ms layer takes 8 ms (measured
    on 2 cores, both for Winograd's GEMMs and separable's pointwise stage).  Kernels that
    need BLAS next to ``prange`` therefore issue one single-threaded GEMM per Numba thread.

    The controller is built once (finding the libraries takes ~2 ms).  ``np.dot`` inside
    Numba calls SciPy's OpenBLAS, loaded only when SciPy's BLAS module is imported: import
    it first, or the controller would not see (nor limit) it.
    """
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


@njit(parallel=True, cache=True)
def pad_into(x, pt, pl, xp):
    """Copy ``x`` (n, c, h, w) into ``xp`` at offset (pt, pl); the rest of ``xp`` is zeroed.

    ``xp`` (n, c, at least h + pt, at least w + pl) is a workspace allocated once in a
    prepare step.
    """
    n, c, h, w = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for nc in prange(n * c):
        b = nc // c
        ch = nc % c
        for i in range(hp):
            row = i - pt
            if row < 0 or row >= h:
                for j in range(wp):
                    xp[b, ch, i, j] = 0
            else:
                for j in range(pl):
                    xp[b, ch, i, j] = 0
                for j in range(w):
                    xp[b, ch, i, pl + j] = x[b, ch, row, j]
                for j in range(pl + w, wp):
                    xp[b, ch, i, j] = 0


def every_problem(spec):
    """``supports`` of a family that computes every valid problem: always None."""
    return None


def with_phases(*phases):
    """``compute(x, out)`` running the named ``phases`` (``(name, fn(x, out))`` pairs) in order.

    ``compute.phases`` keeps them, so that a harness can time each one (the breakdown that
    explains a crossover: transforms against multiplies, packing against GEMM).
    """

    def compute(x, out):
        for _, phase in phases:
            phase(x, out)

    compute.phases = phases
    return compute
