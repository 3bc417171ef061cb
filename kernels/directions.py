"""The two backward convolutions as forward ones, so that every forward kernel computes them.

A layer's forward convolution ``y = conv(x, w)`` comes with two more that training runs (and
that a decoder runs as its "up-convolution"):

**Gradient of the input** (``bwd_d``, the transposed convolution).  Row ``Y = y + pt`` of the
padded input receives ``dy[p] * w[i]`` from every tap ``i`` with ``Y = p*sh + i*dh``.  The rows
of one residue ``a = Y mod sh`` are reached only by the taps with ``i*dh = a (mod sh)``, and
along them the sum is a stride-1 correlation of ``dy`` with those taps flipped (their spacing in
``dy`` is ``dh / gcd(dh, sh)``).  So the ``sh * sw`` residue classes ("phases") of ``dx`` are
``sh * sw`` forward problems on the unchanged ``dy``, whose multiplies add up to exactly those
of the backward convolution: none is spent on the zeros a "dilate ``dy`` by the stride" scheme
would insert.  At stride 1 this is the classic convolution with the rotated filter, channels
swapped.  A phase that no tap reaches is zero (a 1x1 filter at stride 2 leaves three of four).

**Gradient of the weights** (``bwd_w``).  ``dw[k, c, i, j] = sum_{n,p,q} dy[n, k, p, q] *
xpad[n, c, p*sh + i*dh, q*sw + j*dw]``: a forward convolution whose filter is ``dy``, whose
input is ``x`` with batch and channels swapped, with stride and dilation swapped, whose output
(at least ``r x s``) cropped and transposed is ``dw``.  When each group has one input channel
(depthwise) the channels are the groups instead, image by image (each image's ``x`` and ``dy``
as they are, no copy), and the images' results are summed.  Other groupings run group by
group.

Every function takes a problem ``spec`` as the kernels do (`convbench_kernels.contract`) and
builds the forward problems with its ``with_`` (a copy with fields changed, validated).  The
forward family's ``supports`` decides each forward problem: an unsupported one makes the
direction unsupported, with the family's reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
from numba import njit, prange

from convbench_kernels.cpu.common import pooled_empty


class HostArrays:
    """The array moves of the backward forms, on NumPy arrays, in parallel over channel
    planes (Numba's threads, as the kernels around them).  A device offers the same four
    (`convbench_kernels.cuda.strided.DeviceArrays`), so that the forms run its kernels on its
    arrays without a copy to the host."""

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype)

    @staticmethod
    def crop(src, top, left, out):
        """``out`` = the window of ``src`` (n, c, H, W) whose corner is (top, left)."""
        _strided_copy(src, top, left, 1, 1, out, 0, 0, 1, 1, out.shape[2], out.shape[3])

    @staticmethod
    def place(src, dst, row0, col0, sh, sw):
        """``dst[:, :, row0 + sh*i, col0 + sw*j] = src[:, :, i, j]``."""
        _strided_copy(src, 0, 0, 1, 1, dst, row0, col0, sh, sw, src.shape[2], src.shape[3])

    @staticmethod
    def zero(dst, row0, col0, sh, sw, rows, cols):
        """``dst[:, :, row0 + sh*i, col0 + sw*j] = 0`` for ``i < rows``, ``j < cols``."""
        dst[:, :, row0:row0 + sh * rows:sh, col0:col0 + sw * cols:sw] = 0


@njit(parallel=True, cache=True)
def _strided_copy(src, sr0, sc0, ssr, ssc, dst, dr0, dc0, dsr, dsc, rows, cols):
    """``dst[b, c, dr0 + dsr*i, dc0 + dsc*j] = src[b, c, sr0 + ssr*i, sc0 + ssc*j]``."""
    n, chans = dst.shape[0], dst.shape[1]
    for plane in prange(n * chans):
        b, c = plane // chans, plane % chans
        for i in range(rows):
            s_row = src[b, c, sr0 + ssr * i]
            d_row = dst[b, c, dr0 + dsr * i]
            for j in range(cols):
                d_row[dc0 + dsc * j] = s_row[sc0 + ssc * j]


HOST = HostArrays()


@dataclass(frozen=True)
class AxisPhase:
    """One residue class of ``dx`` along one axis, as a forward problem on ``dy``.

    ``dx[start + stride*t] = conv1d(dy[crop[0] : len(dy) - crop[1]] padded by pad, the flipped
    taps at spacing dilation)[t]`` for ``t < count``.
    """

    start: int
    count: int
    taps: tuple[int, ...]  # the filter taps reaching this phase, increasing
    dilation: int
    crop: tuple[int, int]
    pad: tuple[int, int]

    @property
    def empty(self) -> bool:
        """No tap (or no row of dy) reaches the phase: it is zero."""
        return not self.taps or self.count <= 0


def axis_phases(size, pads, filt, stride, dilation, out) -> list[AxisPhase]:
    """The ``stride`` phases of one axis of ``dx`` (input length ``size``, padding ``pads``
    (before, after), ``filt`` taps, forward output length ``out``); empty phases included
    (with ``count`` 0 when no index of dx falls in them)."""
    before = pads[0]
    spacing = dilation // math.gcd(dilation, stride)
    phases = []
    for a in range(stride):
        taps = tuple(i for i in range(filt) if (i * dilation - a) % stride == 0)
        lo = -((a - before) // stride)  # ceil((before - a) / stride)
        hi = (before + size - 1 - a) // stride
        count = hi - lo + 1
        start = a + stride * lo - before
        if not taps or count <= 0:
            phases.append(AxisPhase(start, max(count, 0), (), spacing, (0, 0), (0, 0)))
            continue
        reach = spacing * (len(taps) - 1)
        top = (taps[0] * dilation - a) // stride + reach - lo
        crop_top = max(-top, 0)
        bottom = count + reach - (out - crop_top) - max(top, 0)
        crop_bottom = max(-bottom, 0)
        if out - crop_top - crop_bottom <= 0:  # every dy row it would read is cropped away
            phases.append(AxisPhase(start, count, (), spacing, (0, 0), (0, 0)))
            continue
        phases.append(AxisPhase(start, count, taps, spacing, (crop_top, crop_bottom),
                                (max(top, 0), max(bottom, 0))))
    return phases


@dataclass(frozen=True)
class Phase:
    """One 2-D phase of ``dx``: rows ``rows``, columns ``cols``, and the forward problem on
    ``dy`` that computes it (None when it is zero)."""

    rows: AxisPhase
    cols: AxisPhase
    problem: object
    strides: tuple[int, int]  # of the backward problem: the step between a phase's rows


@lru_cache(maxsize=256)
def data_phases(spec) -> tuple[Phase, ...]:
    """The phases of ``spec``'s gradient of the input (non-empty in count), each with its
    forward problem: ``dy``'s cropped view as input (``k`` channels), ``c`` outputs, the
    flipped taps as filter, stride 1.

    Cached (a spec is immutable): every call of the gradient asks twice (whether the family
    supports it, then to prepare it), and building the phases' validated problems took 0.2
    ms a time for a stride of 2 (0.45 ms of a 2.3 ms call at 3x3 s2 128@56 batch 1)."""
    pt, pb, pl, pr = spec.pads
    rows = axis_phases(spec.h, (pt, pb), spec.r, spec.sh, spec.dh, spec.oh)
    cols = axis_phases(spec.w, (pl, pr), spec.s, spec.sw, spec.dw, spec.ow)
    phases = []
    for ra in rows:
        for cb in cols:
            if ra.count <= 0 or cb.count <= 0:
                continue
            problem = None
            if not (ra.empty or cb.empty):
                problem = spec.with_(
                    c=spec.k, k=spec.c, h=spec.oh - sum(ra.crop), w=spec.ow - sum(cb.crop),
                    r=len(ra.taps), s=len(cb.taps), stride=1,
                    padding=(*ra.pad, *cb.pad), dilation=(ra.dilation, cb.dilation),
                    direction="fwd")
            phases.append(Phase(ra, cb, problem, (spec.sh, spec.sw)))
    return tuple(phases)


@dataclass(frozen=True)
class SwappedFilter:
    """The forward filter of a phase, described rather than built: per group, the channels of
    ``source`` (the layer's weights as (k, cg, r*s)) swapped and the taps ``taps`` of each
    filter picked, in that order (the phase's taps, flipped).  Its element ``[g*cg + ci,
    ko, t]`` is ``source[g*kg + ko, ci, taps[t]]`` (``kg``, ``cg``: the layer's).

    A forward family whose ``prepare`` says ``reads_swapped`` gets this instead of the array
    and reads ``source`` in whatever order builds its own layout, in one pass where `array`
    and a copy would make two (`convbench_kernels.cpu.direct`'s packed weights); the others
    get `array`."""

    source: np.ndarray
    groups: int
    taps: np.ndarray  # int64
    shape: tuple[int, int, int, int]  # of the filter: (c, kg, taps' rows, taps' columns)

    def array(self) -> np.ndarray:
        """The filter, (c, kg, rows, columns), C-contiguous.  Its memory comes from the
        workspace pool: built afresh on every call, 9.4 MB for 512 -> 512 3x3, a new block
        page-faulted in costs as much again as the copy (0.9 against 2 ms)."""
        out = pooled_empty(self.shape, self.source.dtype)
        _swap_flip(self.source.reshape(self.source.shape[0], -1), self.groups,
                   self.source.shape[2], self.taps, out.reshape(self.shape[0], -1))
        return out


def phase_filter(w, spec, phase: Phase) -> SwappedFilter:
    """The forward filter of ``phase``: per group, ``w``'s channels swapped ((c, k/groups,
    ...)), only the phase's taps, flipped."""
    w = np.ascontiguousarray(w, dtype=spec.dtype)
    rows, cols = phase.rows.taps[::-1], phase.cols.taps[::-1]
    taps = np.array([i * spec.s + j for i in rows for j in cols], np.int64)
    return SwappedFilter(w.reshape(spec.k, spec.cg, spec.r * spec.s), spec.groups, taps,
                         (spec.c, spec.kg, len(rows), len(cols)))


@njit(parallel=True, cache=True)
def _swap_flip(w, groups, rs, taps, out):
    """``out[g*cg + ci, ko*T + t] = w[g*kg + ko, ci*rs + taps[t]]`` (T taps): the weights
    (k, cg*r*s) with channels swapped and taps picked, an output channel per thread.  A
    transpose of the whole filter: on 512 -> 512 3x3 (9.4 MB) about 1 ms on 2 cores, against
    25 ms for NumPy's gather of the transposed view."""
    k = w.shape[0]
    kg, cg = k // groups, out.shape[0] // groups
    nt = taps.shape[0]
    for oc in prange(out.shape[0]):
        g, ci = oc // cg, oc % cg
        dst = out[oc]
        for ko in range(kg):
            src = w[g * kg + ko]
            for t in range(nt):
                dst[ko * nt + t] = src[ci * rs + taps[t]]


def weight_problem(spec):
    """The forward problem whose output holds ``spec``'s gradient of the weights: one group
    (the batch-swapped form, per group) or, for one input channel per group, one image (the
    channels-as-groups form)."""
    pads = spec.pads
    common = dict(h=spec.h, w=spec.w, k=spec.k if spec.cg == 1 else spec.kg,
                  r=spec.oh, s=spec.ow, stride=(spec.dh, spec.dw),
                  dilation=(spec.sh, spec.sw), padding=pads, direction="fwd")
    if spec.cg == 1:
        return spec.with_(n=1, c=spec.c, groups=spec.c, **common)
    return spec.with_(n=spec.cg, c=spec.n, groups=1, **common)


def supporting(supports_fwd, weight=None):
    """``supports(spec)`` for every direction, from a family's forward rule (and ``weight``,
    the rule of the family's own weight gradient, where it has one): a gradient is computed
    when the family computes the layer and every forward problem the gradient becomes."""

    def supports(spec):
        if spec.direction == "fwd":
            return supports_fwd(spec)
        # a family computes the gradients of the layers it computes, and only those (the
        # depthwise family never takes a dense layer's gradient as a one-channel problem)
        reason = supports_fwd(spec.with_(direction="fwd"))
        if reason is not None:
            return f"{spec.direction} of a layer it does not compute: {reason}"
        if spec.direction == "bwd_w" and weight is not None:
            return weight(spec)
        problems = ([p.problem for p in data_phases(spec) if p.problem is not None]
                    if spec.direction == "bwd_d" else [weight_problem(spec)])
        for problem in problems:
            reason = supports_fwd(problem)
            if reason is not None:
                return f"{spec.direction} as forward problem {problem.id}: {reason}"
        return None

    return supports


def preparing(prepare_fwd, weight=None, arrays=HOST):
    """``prepare(b, spec)`` for every direction, from a family's forward ``prepare`` (and
    ``weight``, its own ``prepare`` of the weight gradient, where it has one); ``arrays``:
    the array moves of the device the forward kernels run on."""

    def prepare(b, spec):
        if spec.direction == "fwd":
            return prepare_fwd(b, spec)
        if spec.direction == "bwd_d":
            return _prepare_data(prepare_fwd, b, spec, arrays)
        if weight is not None:
            return weight(b, spec)
        return _prepare_weight(prepare_fwd, b, spec)

    prepare.forward = prepare_fwd  # the family's own forward prepare
    return prepare


def sizing(workspace_fwd, weight=None):
    """``workspace(spec)`` for every direction: the forward problems' largest, plus the phase
    buffers and copies of the backward forms (or ``weight``, the family's own estimate for its
    own weight gradient)."""

    def workspace(spec):
        if spec.direction == "fwd":
            return workspace_fwd(spec) if workspace_fwd else 0
        if spec.direction == "bwd_w" and weight is not None:
            return weight(spec)
        size = spec.itemsize
        if spec.direction == "bwd_d":
            problems = [p.problem for p in data_phases(spec) if p.problem is not None]
            extra = sum(math.prod(p.output_shape) + math.prod(p.input_shape)
                        for p in problems) * size
        else:
            problems = [weight_problem(spec)]
            extra = (math.prod(problems[0].output_shape) + math.prod(spec.input_shape)
                     + math.prod(spec.output_shape)) * size
        inner = max((workspace_fwd(p) for p in problems), default=0) if workspace_fwd else 0
        return inner + extra

    return workspace


def _prepare_data(prepare_fwd, w, spec, arrays):
    """``compute(dy, dx)``: each phase's forward kernel on its window of ``dy`` (copied when
    the phase crops it), its result placed in ``dx``'s strided view (written directly when
    the phase is all of ``dx``); phases no tap reaches are zeroed."""
    sh, sw = spec.sh, spec.sw
    steps = []
    for phase in data_phases(spec):
        rows, cols = phase.rows, phase.cols
        if phase.problem is None:
            steps.append(partial(_zero_phase, arrays, rows, cols, sh, sw))
            continue
        problem = phase.problem
        weights = phase_filter(w, spec, phase)
        if not getattr(prepare_fwd, "reads_swapped", False):
            weights = weights.array()
        run = prepare_fwd(weights, problem)
        cropped = any(rows.crop) or any(cols.crop)
        src = arrays.empty(problem.input_shape, spec.dtype) if cropped else None
        buf = (None if problem.output_shape == spec.input_shape
               else arrays.empty(problem.output_shape, spec.dtype))
        steps.append(partial(_run_phase, arrays, run, rows, cols, sh, sw, src, buf))

    def compute(dy, dx):
        for step in steps:
            step(dy, dx)

    return compute


def _zero_phase(arrays, rows, cols, sh, sw, dy, dx):
    arrays.zero(dx, rows.start, cols.start, sh, sw, rows.count, cols.count)


def _run_phase(arrays, run, rows, cols, sh, sw, src, buf, dy, dx):
    if src is not None:
        arrays.crop(dy, rows.crop[0], cols.crop[0], src)
    if buf is None:
        run(dy if src is None else src, dx)
        return
    run(dy if src is None else src, buf)
    arrays.place(buf, dx, rows.start, cols.start, sh, sw)


def _prepare_weight(prepare_fwd, x, spec):
    """``compute(dy, dw)``: the forward kernel of `weight_problem`, prepared on each call
    (its filter is ``dy``, new at every call), per group unless one form covers them all."""
    problem = weight_problem(spec)
    r, s = spec.r, spec.s
    buf = np.empty(problem.output_shape, spec.dtype)
    x = np.ascontiguousarray(x)

    def compute(dy, dw):
        if spec.cg == 1:  # channels as groups, image by image, summed
            for b in range(spec.n):
                filt = dy[b].reshape(spec.k, 1, spec.oh, spec.ow)
                prepare_fwd(filt, problem)(x[b:b + 1], buf)
                if b == 0:
                    dw[:, 0] = buf[0, :, :r, :s]
                else:
                    dw[:, 0] += buf[0, :, :r, :s]
            return
        kg, cg = spec.kg, spec.cg
        for g in range(spec.groups):
            xs = np.ascontiguousarray(x[:, g * cg:(g + 1) * cg].transpose(1, 0, 2, 3))
            filt = np.ascontiguousarray(dy[:, g * kg:(g + 1) * kg].transpose(1, 0, 2, 3))
            prepare_fwd(filt, problem)(xs, buf)
            dw[g * kg:(g + 1) * kg] = buf[:, :, :r, :s].transpose(1, 0, 2, 3)

    return compute
