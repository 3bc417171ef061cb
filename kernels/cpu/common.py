"""Pieces shared by the CPU kernels."""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def pad_into(x, pt, pl, xp):
    """Copy ``x`` (n, c, h, w) into ``xp`` at offset (pt, pl); the border is zeroed.

    ``xp`` (n, c, h + pt + pb, w + pl + pr) is a workspace allocated once in a prepare step.
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


def padded_buffer(spec):
    """A workspace for the padded input of ``spec`` (n, c, h + pt + pb, w + pl + pr)."""
    pt, pb, pl, pr = spec.pads
    return np.empty((spec.n, spec.c, spec.h + pt + pb, spec.w + pl + pr), dtype=spec.dtype)
