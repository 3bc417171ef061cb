"""The public Python face: convolve NumPy arrays with any registered algorithm.

Input conversion rule (one place, used by every function here): any array-like of
the right shape is accepted, views and non-contiguous arrays included.  The
compute dtype is float64 if any operand is float64, else float32; float16
operands compute in float32; integer and boolean operands are converted
exactly to the dtype of the float operand, or to float64 when no operand is a
float.  Complex and other dtypes are rejected with a ValueError.
"""

from __future__ import annotations

import functools

import numpy as np

from convbench_kernels.reference import reference_conv2d as _reference

from . import devices, registry
from .spec import ConvSpec

_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}


def _as_arrays(**arrays) -> tuple[list[np.ndarray], np.dtype]:
    """Apply the conversion rule: C-contiguous arrays in the common compute dtype."""
    given = list(arrays.values())
    dtype = getattr(given[0], "dtype", None)
    if dtype in _FLOATS and all(  # the common case, checked first: nothing to convert
            type(a) is np.ndarray and a.dtype == dtype and a.ndim == 4 and a.flags.c_contiguous
            for a in given):
        return given, dtype
    arrs = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"{name} must hold real numbers (float, int or bool), "
                             f"got dtype {a.dtype}")
        if a.ndim != 4:
            raise ValueError(f"{name} must be 4-D, got shape {a.shape}")
        arrs[name] = a
    floats = [a.dtype for a in arrs.values() if a.dtype.kind == "f"]
    wide = any(d.itemsize >= 8 for d in floats) or not floats
    dtype = np.dtype(np.float64 if wide else np.float32)
    return [np.ascontiguousarray(a, dtype=dtype) for a in arrs.values()], dtype


def _spec(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> ConvSpec:
    args = (x.shape, w.shape, stride, padding, dilation, groups, x.dtype)
    try:
        return _cached_spec(*args)
    except TypeError:  # an unhashable argument (a list): build it uncached
        return _cached_spec.__wrapped__(*args)


@functools.lru_cache(maxsize=1024)
def _cached_spec(xshape, wshape, stride, padding, dilation, groups, dtype) -> ConvSpec:
    """The spec of one call's arguments; cached, since a ConvSpec is immutable and its
    validation costs ~6 us, a tenth of a small depthwise layer."""
    n, c, h, wd = xshape
    k, cg, r, s = wshape
    if isinstance(groups, int) and groups >= 1 and cg * groups != c:
        raise ValueError(f"w must have shape (k, c/groups, r, s) = (k, {c}/{groups}, r, s) "
                         f"for x of shape {xshape}, got {wshape}")
    return ConvSpec(n=n, c=c, h=h, w=wd, k=k, r=r, s=s, stride=stride, padding=padding,
                    dilation=dilation, groups=groups, dtype=dtype)


def run(algo: registry.Algorithm, spec: ConvSpec, a: np.ndarray, b) -> np.ndarray:
    """Prepare ``algo`` for ``spec`` with ``b`` (the weights; for ``bwd_w`` the input) and
    compute on ``a`` (the input; for both gradients dy)."""
    reason = algo.supports(spec)
    if reason is not None:
        raise ValueError(f"{algo.name} does not compute {spec.id}: {reason}")
    device = devices.get(algo.device)
    compute = algo.prepare(b, spec)
    out = device.empty(spec.result_shape, spec.dtype)
    compute(device.put(a), out)
    return device.get(out)


def _entry(algo: str, spec: ConvSpec, device: str, auto_mode) -> registry.Algorithm:
    """The registry entry ``algo`` names for ``spec`` (``auto``: the choice database's)."""
    if algo == "auto":
        from . import choices

        algo = choices.choose(spec, device, auto_mode).algorithm
    entry = registry.get(algo, device)
    if entry.operator != "conv":
        raise ValueError(f"algo {algo!r} is the separable operator; call "
                         "convbench.separable_conv2d(x, w_depthwise, w_pointwise, ...)")
    return entry


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1, algo="direct", device="cpu",
           auto_mode=None):
    """2-D cross-correlation (PyTorch's ``conv2d``) with a registered algorithm.

    Parameters
    ----------
    x : array_like (n, c, h, w)
    w : array_like (k, c // groups, r, s)
    stride, dilation : int or (int, int)
    padding : 'valid', 'same', int, (ph, pw) or (top, bottom, left, right)
    groups : int
    algo : str
        A registry name (``convbench.algorithms()``), or ``"auto"``: the algorithm this
        machine's choice database (`convbench.choices`) recorded for the problem, device and
        thread count; on a miss, ``auto_mode`` decides.  `convbench.last_choice` says which
        algorithm ran and why.
    device : str
        ``cpu`` or ``cuda`` (NumPy arrays in and out; the copies are made here).
    auto_mode : str, optional
        With ``algo="auto"``, what a miss does: ``measure`` (time every accurate algorithm
        once, about ``$CONVBENCH_AUTO_BUDGET`` seconds, default 1, and record the winner),
        ``predict`` (the winner model's choice, `convbench.model`, nothing measured) or
        ``db-only`` (a ValueError).  Default: ``$CONVBENCH_AUTO``, else ``measure``.

    Returns
    -------
    numpy.ndarray (n, k, oh, ow) in the compute dtype (see the module's conversion rule).

    Raises
    ------
    ValueError
        For an invalid problem, an unknown algorithm, or a problem the algorithm does not
        compute (with the reason).
    """
    (x, w), _ = _as_arrays(x=x, w=w)
    spec = _spec(x, w, stride, padding, dilation, groups)
    return run(_entry(algo, spec, device, auto_mode), spec, x, w)


def _shape(name: str, value) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4 integers (n, c, h, w) or (k, c/groups, r, s), "
                         f"got {value!r}")
    return shape


def _check_dy(dy: np.ndarray, spec: ConvSpec) -> None:
    if dy.shape != spec.output_shape:
        raise ValueError(f"dy must have the forward output's shape {spec.output_shape} for "
                         f"problem {spec.forward.id}, got {dy.shape}")


def conv2d_input(input_shape, w, dy, stride=1, padding=0, dilation=1, groups=1,
                 algo="direct", device="cpu", auto_mode=None):
    """The gradient of `conv2d` with respect to its input (PyTorch's
    ``torch.nn.grad.conv2d_input``): dx from dy and the weights.

    Parameters
    ----------
    input_shape : (n, c, h, w) of the forward input
    w : array_like (k, c // groups, r, s)
    dy : array_like (n, k, oh, ow), the gradient of the forward output
    stride, padding, dilation, groups, algo, device, auto_mode
        As in `conv2d` (every padding form it accepts); the problem's id ends in ``-bwd_d``.

    Returns
    -------
    numpy.ndarray ``input_shape``
    """
    (w, dy), _ = _as_arrays(w=w, dy=dy)
    n, c, h, width = _shape("input_shape", input_shape)
    spec = _spec(np.empty((n, c, h, width), w.dtype), w, stride, padding, dilation,
                 groups).with_(direction="bwd_d")
    _check_dy(dy, spec)
    return run(_entry(algo, spec, device, auto_mode), spec, dy, w)


def conv2d_weight(x, weight_shape, dy, stride=1, padding=0, dilation=1, groups=1,
                  algo="direct", device="cpu", auto_mode=None):
    """The gradient of `conv2d` with respect to its weights (PyTorch's
    ``torch.nn.grad.conv2d_weight``): dw from the input and dy.

    Parameters
    ----------
    x : array_like (n, c, h, w), the forward input
    weight_shape : (k, c // groups, r, s)
    dy : array_like (n, k, oh, ow), the gradient of the forward output
    stride, padding, dilation, groups, algo, device, auto_mode
        As in `conv2d`; the problem's id ends in ``-bwd_w``.

    Returns
    -------
    numpy.ndarray ``weight_shape``
    """
    (x, dy), _ = _as_arrays(x=x, dy=dy)
    shape = _shape("weight_shape", weight_shape)
    spec = _spec(x, np.empty(shape, x.dtype), stride, padding, dilation,
                 groups).with_(direction="bwd_w")
    _check_dy(dy, spec)
    return run(_entry(algo, spec, device, auto_mode), spec, dy, x)


def conv_transpose2d(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                     algo="direct", device="cpu", auto_mode=None):
    """Transposed convolution ("up-convolution"), PyTorch's ``conv_transpose2d``: the
    gradient of the input of the convolution it inverts, whose problem (``-bwd_d``) it runs.

    Parameters
    ----------
    x : array_like (n, c_in, h, w)
    w : array_like (c_in, k_out // groups, r, s)
    stride, dilation, groups
        As in `conv2d`.
    padding : int, (ph, pw) or (top, bottom, left, right)
        Removed from the full output, as the inverted convolution's padding.
    output_padding : int or (int, int)
        Rows and columns added at the bottom and right, each smaller than the stride or the
        dilation of its axis.
    algo, device, auto_mode
        As in `conv2d`.

    Returns
    -------
    numpy.ndarray (n, k_out, (h - 1)*stride - pads + dilation*(r - 1) + output_padding + 1,
    likewise for w)
    """
    (x, w), _ = _as_arrays(x=x, w=w)
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right) for "
                         f"conv_transpose2d, got {padding!r}")
    spec = _transposed_spec(x.shape, w.shape, stride, padding, output_padding, dilation,
                            groups, x.dtype)
    extra = spec.oh - x.shape[2], spec.ow - x.shape[3]  # output_padding >= stride: zero rows
    if any(extra):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return run(_entry(algo, spec, device, auto_mode), spec, x, w)


def _transposed_spec(xshape, wshape, stride, padding, output_padding, dilation, groups,
                     dtype) -> ConvSpec:
    """The ``bwd_d`` problem of the convolution a transposed convolution inverts."""
    n, c_in, h, width = xshape
    k_in, kg, r, s = wshape
    if k_in != c_in:
        raise ValueError(f"w must have shape (c_in, k_out/groups, r, s) = ({c_in}, ...) for x "
                         f"of shape {xshape}, got {wshape}")
    # any size will do: the probe only reads stride, padding and dilation in canonical form
    probe = ConvSpec(c=groups * kg, h=1 << 20, k=c_in, r=r, s=s, stride=stride,
                     padding=padding, dilation=dilation, groups=groups, dtype=dtype)
    pt, pb, pl, pr = probe.pads
    ops = output_padding if isinstance(output_padding, (tuple, list)) else (output_padding,) * 2
    if len(ops) != 2 or any(not isinstance(o, int) or o < 0 for o in ops):
        raise ValueError(f"output_padding must be an int >= 0 or a pair, got {output_padding!r}")
    for axis, o, st, d in (("h", ops[0], probe.sh, probe.dh), ("w", ops[1], probe.sw, probe.dw)):
        if o >= st and o >= d:
            raise ValueError(f"output_padding must be smaller than the stride or the dilation, "
                             f"got {o} on {axis} with stride {st} and dilation {d}")
    oh = (h - 1) * probe.sh - pt - pb + probe.dh * (r - 1) + ops[0] + 1
    ow = (width - 1) * probe.sw - pl - pr + probe.dw * (s - 1) + ops[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"padding {padding!r} leaves no output ({oh}x{ow}) for x of shape "
                         f"{xshape} and w of shape {wshape}")
    return probe.with_(n=n, h=oh, w=ow, direction="bwd_d")


def separable_conv2d(x, w_depthwise, w_pointwise, stride=1, padding=0, dilation=1,
                     algo="separable", device="cpu", auto_mode=None):
    """Depthwise-separable convolution: depthwise r x s (groups = c), then pointwise 1x1.

    Parameters
    ----------
    x : array_like (n, c, h, w)
    w_depthwise : array_like (c * m, 1, r, s)
        ``m`` is the channel multiplier.
    w_pointwise : array_like (k, c * m, 1, 1)
    stride, padding, dilation
        Of the depthwise stage, as in `conv2d`.
    algo : str
        ``separable``: the separable operator (one registry entry, both stages in one
        prepared call).  ``auto``: each stage is its own convolution (the depthwise one with
        ``groups = c``, the pointwise 1x1 one), and each runs the algorithm
        ``conv2d(..., algo="auto")`` chooses for it; `convbench.last_choice` names both.
    device, auto_mode
        As in `conv2d`.

    Returns
    -------
    numpy.ndarray (n, k, oh, ow)
    """
    if algo not in ("separable", "auto"):
        raise ValueError(f"algo: unknown value {algo!r} for separable_conv2d "
                         "(allowed: separable, auto)")
    (x, wd, wp), _ = _as_arrays(x=x, w_depthwise=w_depthwise, w_pointwise=w_pointwise)
    n, c, h, width = x.shape
    cm, one, r, s = wd.shape
    if one != 1 or cm % c:
        raise ValueError(f"w_depthwise must have shape (c*m, 1, r, s) with c={c}, got {wd.shape}")
    if wp.shape[1:] != (cm, 1, 1):
        raise ValueError(f"w_pointwise must have shape (k, {cm}, 1, 1), got {wp.shape}")
    if algo == "auto":
        return _separable_auto(x, wd, wp, stride, padding, dilation, device, auto_mode)
    spec = ConvSpec(n=n, c=c, h=h, w=width, k=wp.shape[0], r=r, s=s, stride=stride,
                    padding=padding, dilation=dilation, dtype=x.dtype.name)
    return run(registry.get("separable", device), spec, x, (wd, wp))


def _separable_auto(x, wd, wp, stride, padding, dilation, device, auto_mode) -> np.ndarray:
    """The two stages of a separable convolution, each as ``algo="auto"`` chooses it."""
    from . import choices

    mid = conv2d(x, wd, stride, padding, dilation, groups=x.shape[1], algo="auto",
                 device=device, auto_mode=auto_mode)
    depthwise = choices.last_choice()
    out = conv2d(mid, wp, algo="auto", device=device, auto_mode=auto_mode)
    choices.chose_stages(depthwise, choices.last_choice())
    return out


def reference_conv2d(x, w, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """The float64 reference convolution (slow, simple, obviously correct); same arguments
    as `conv2d`, result always float64."""
    (x, w), _ = _as_arrays(x=x, w=w)
    spec = _spec(x, w, stride, padding, dilation, groups)
    return _reference(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                      dilation=(spec.dh, spec.dw), groups=spec.groups)


def algorithms(device: str | None = None) -> list[registry.Algorithm]:
    """The registry entries (all, or those of one device)."""
    return registry.algorithms(device)
