"""The float64 oracles: slow, simple, obviously correct.

Cross-correlation as PyTorch's ``conv2d`` computes it: NCHW input, OIHW weights,
stride, explicit padding, dilation, groups.  One tap at a time: for each filter
position (i, j) the strided, dilated window of the padded input is a plain slice,
and its channel contraction with ``w[:, :, i, j]`` is added to the output.  It
uses NumPy only, so that it shares no code with the kernels it judges.

The two gradients use the same window, read the other way: the gradient of the input adds
each tap's contraction of ``dy`` into the window of a padded zero input (then drops the
padding), the gradient of the weights contracts the window with ``dy``.  They are the
adjoints of the forward oracle (``<conv(x, w), dy> = <x, input_grad(dy, w)> = <w,
weight_grad(x, dy)>``), which the tests check, with finite differences besides.
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


def _window(i, j, oh, ow, stride, dilation):
    """The (rows, cols) slices of the padded input that filter tap (i, j) reads."""
    (sh, sw), (dh, dw) = stride, dilation
    return (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def reference_conv2d_input(dy, w, input_hw, stride=(1, 1), pads=(0, 0, 0, 0),
                           dilation=(1, 1), groups=1):
    """The gradient of `reference_conv2d` with respect to its input, in float64 (also the
    transposed convolution of ``dy`` with ``w``).

    Parameters
    ----------
    dy : array_like (n, k, oh, ow)
    w : array_like (k, c // groups, r, s)
    input_hw : (h, w) of the forward input
    stride, pads, dilation, groups : as `reference_conv2d`

    Returns
    -------
    numpy.ndarray (n, c, h, w), float64
    """
    dy = np.asarray(dy, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, k, oh, ow = dy.shape
    _, cg, r, s = w.shape
    h, wd = input_hw
    pt, pb, pl, pr = pads
    kg = k // groups
    dxp = np.zeros((n, cg * groups, h + pt + pb, wd + pl + pr))
    for g in range(groups):
        for i in range(r):
            for j in range(s):
                rows, cols = _window(i, j, oh, ow, stride, dilation)
                taps = w[g * kg:(g + 1) * kg, :, i, j]  # (kg, cg)
                dxp[:, g * cg:(g + 1) * cg, rows, cols] += np.einsum(
                    "nkhw,kc->nchw", dy[:, g * kg:(g + 1) * kg], taps, optimize=True)
    return dxp[:, :, pt:pt + h, pl:pl + wd]


def reference_conv2d_weight(x, dy, filter_rs, stride=(1, 1), pads=(0, 0, 0, 0),
                            dilation=(1, 1), groups=1):
    """The gradient of `reference_conv2d` with respect to its weights, in float64.

    Parameters
    ----------
    x : array_like (n, c, h, w)
    dy : array_like (n, k, oh, ow)
    filter_rs : (r, s) of the weights
    stride, pads, dilation, groups : as `reference_conv2d`

    Returns
    -------
    numpy.ndarray (k, c // groups, r, s), float64
    """
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    n, c, _, _ = x.shape
    _, k, oh, ow = dy.shape
    r, s = filter_rs
    pt, pb, pl, pr = pads
    cg, kg = c // groups, k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dw = np.zeros((k, cg, r, s))
    for g in range(groups):
        for i in range(r):
            for j in range(s):
                rows, cols = _window(i, j, oh, ow, stride, dilation)
                dw[g * kg:(g + 1) * kg, :, i, j] = np.einsum(
                    "nchw,nkhw->kc", xp[:, g * cg:(g + 1) * cg, rows, cols],
                    dy[:, g * kg:(g + 1) * kg], optimize=True)
    return dw


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
