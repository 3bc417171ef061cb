"""The float64 oracle: slow, simple, obviously correct.

Cross-correlation as PyTorch's ``conv2d`` computes it: NCHW input, OIHW weights,
stride, explicit padding, dilation, groups.  One tap at a time: for each filter
position (i, j) the strided, dilated window of the padded input is a plain slice,
and its channel contraction with ``w[:, :, i, j]`` is added to the output.  It
uses NumPy only, so that it shares no code with the kernels it judges.
"""

import numpy as np


def reference_conv2d(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Convolve in float64.

    Parameters
    ----------
    x : array_like (n, c, h, w)
    w : array_like (k, c // groups, r, s)
    stride, dilation : (int, int)
    pads : (top, bottom, left, right)
    groups : int

    Returns
    -------
    numpy.ndarray (n, k, oh, ow), float64
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, _, _ = x.shape
    k, cg, r, s = w.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = pads
    assert c == cg * groups and k % groups == 0, "channel counts do not match groups"
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    hp, wp = xp.shape[2:]
    oh = (hp - dh * (r - 1) - 1) // sh + 1
    ow = (wp - dw * (s - 1) - 1) // sw + 1
    kg = k // groups
    out = np.zeros((n, k, oh, ow))
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(r):
            for j in range(s):
                window = xs[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                            j * dw: j * dw + sw * (ow - 1) + 1: sw]  # (n, cg, oh, ow)
                taps = w[g * kg:(g + 1) * kg, :, i, j]  # (kg, cg)
                # optimize=True routes the contraction through BLAS (tensordot)
                out[:, g * kg:(g + 1) * kg] += np.einsum("nchw,kc->nkhw", window, taps,
                                                         optimize=True)
    return out

def composed_weight(w_depthwise, w_pointwise, multiplier=1):
    """The standard OIHW weight (k, c, r, s) of depthwise-then-pointwise.

    ``W[o, ci, i, j] = sum_q w_pw[o, ci*m + q] * w_dw[ci*m + q, 0, i, j]``, m the multiplier.
    """
    cm, _, r, s = w_depthwise.shape
    k = w_pointwise.shape[0]
    c = cm // multiplier
    pw = np.asarray(w_pointwise).reshape(k, c, multiplier)        # (k, c, m)
    dw = np.asarray(w_depthwise).reshape(c, multiplier, r, s)      # (c, m, r, s)
    return np.einsum("kcq,cqij->kcij", pw, dw)
