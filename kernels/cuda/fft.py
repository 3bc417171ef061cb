"""FFT convolution on CUDA: radix-2 Stockham FFTs of our own, a complex channel reduction per
frequency, inverse FFTs, a strided crop.  No cuFFT.

The FFT
-------
``plan_fft`` transforms, in place, every line along axis 1 of a (B, N, M) complex device
array (N a power of two; B*M lines, line (b, m) holds ``a[b, :, m]``): rows of planes are
(B*P, Q, 1) views, columns (B, P, Q).  ``plan_fft2`` does a (B, P, Q) batch as rows then
columns.  Radix-2 Stockham, decimation in frequency (auto-sorting: no bit reversal): stage
``t`` (stride ``s = 2**t``, half-length ``m = N / 2s``) maps butterfly ``(p, q)``,
``p < m, q < s``::

    a, b = x[q + s p], x[q + s (p + m)]
    y[q + 2 s p] = a + b
    y[q + s (2 p + 1)] = (a - b) w^p_{2m}      (w^p_{2m} = exp(-2 pi i p / 2m) = tw[p s])

ping-ponging between two buffers; after log2 N stages the spectrum is in natural order.
Twiddles come from a table ``tw[j] = exp(-2 pi i j / N)``, j < N/2, made in float64 and
rounded once; the inverse (unnormalised) uses their conjugates.

* ``N <= SMEM`` (2048 complex64 / 1024 complex128 points, 32 KB of shared memory per block
  for the two buffers): one launch per axis.  A block loads up to ``R = SMEM // N`` whole
  lines (``SMEM // (N + 1)`` for columns; fewer when that would leave SMs idle, see
  `_lines_per_block`) into shared memory (rows: consecutive threads read
  consecutive points of a line; columns: consecutive threads read the same point of
  consecutive lines, so global accesses coalesce either way; column lines sit ``N + 1``
  points apart in shared memory, so that those threads hit distinct banks: `line_stride`),
  runs every stage there with a ``syncthreads`` between stages (each thread strides over
  the ``R N / 2`` butterflies), and writes the lines back.
* longer lines: one launch per stage in global memory, one thread per butterfly,
  ping-ponging with a scratch buffer (and a copy back when log2 N is odd).

Real data: two real planes per complex transform
------------------------------------------------
Input channels are packed in pairs, ``z = x_{2j} + i x_{2j+1}``, so that one complex FFT
transforms two real planes (half the forward work of a plain complex transform of real
data).  The split needs no pass of its own: with ``Z = FFT(z)`` and real x,
``X_{2j}[f] = (Z[f] + conj Z[-f]) / 2`` and ``X_{2j+1}[f] = (Z[f] - conj Z[-f]) / 2i``, so a
channel pair contributes ``U1[f] Z[f] + U2[f] conj Z[-f]`` with ``U1 = (V_e - i V_o) / 2``,
``U2 = (V_e + i V_o) / 2`` folded into the filter spectra (prepare).  Output channels are
paired the same way: the reduction writes ``O = Y_{2k} + i Y_{2k+1}``, whose inverse FFT is
``y_{2k} + i y_{2k+1}`` (both real): half the inverse work, and the crop reads the real and
imaginary parts.  The reduction then does ``n * (k/2) * P*Q * (c/groups)`` complex
multiply-adds (two per channel pair), half of what a full-spectrum reduction over unpacked
planes would.  (The
textbook N/2-point real FFT would need a split/twiddle pass after every forward and a
merge pass before every inverse; pairing channels needs neither, and the reduction already
holds Z[f] and Z[-f].)  With an odd channel count the last pair's imaginary plane is zero.

The convolution
---------------
Cross-correlation ``z[t] = sum_v x[t + v - pt] wd[v]`` (wd: the filter spread for dilation)
is a circular correlation of ``x`` placed at positions ``[0, h)`` of a length-P buffer:
``c[m] = sum_v X[(m + v) mod P] wd[v]``, read at ``m = (t - pt) mod P``.  It reads positions
``[-pt, h + pb - 1]``, and wrap-around cannot pollute them when ``P >= max(h + pt, h + pb)``
(negative positions wrap into ``[P - pt, P) >= h``, the zeros).  That is up to half of the
``h + pt + pb`` a padded-input layout needs (7x7 with padding 1: 8 instead of 16).  A
spread filter longer than P aliases its taps mod P, which is exact for the same reason.
Cross-correlation is a product with the conjugate filter spectrum, ``C = X conj(WD)``;
``1 / (2 P Q)`` (inverse scaling and the split's 1/2) is folded into the filter spectra, made
in float64 on the host (once per layer) and rounded once.  Stride: the stride-1 result is
subsampled in the crop (``(i sh - pt) mod P``), simple but it computes ``sh * sw`` times the
outputs it keeps.  Groups: an output pair sums the channel pairs spanning its two outputs'
groups, with zero spectra for a channel outside an output's group (an odd channel or output
count per group makes pairs straddle groups: up to twice the multiply-adds there, many of
them by zero).

Kernels and launches (TPB = 128 threads per block unless said)
---------------------------------------------------------------
``gather``    one thread per element of z (n, c2, P, Q), c2 = ceil(c/2): zero-padded pairs.
``fft_shared`` / ``fft_stage`` / ``_copy``   forward FFT of z, inverse FFT of o (above);
              the shared kernel uses min(TPB, R*N/2) threads and ceil(lines/R) blocks.
``reduce``    one thread per (image, output pair, frequency), frequency fastest (coalesced
              reads of z and of the spectra u (k2, span, 2, P, Q)); sums the pair's span of
              channel pairs.
``crop``      one thread per output element.

Error (max|out - ref| / max|ref|, normal random data, measured on the simulator, whose
arithmetic is NumPy's in the same dtypes): float32 2e-8..2.2e-7, float64 2e-16..4e-16 on the
30 edge cases of tests/cases.py (transforms up to 32 x 32); the FFT alone, up to 32 points:
1.2e-7 / 3e-16 against numpy.fft.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import every_problem as supports
from convbench_kernels.contract import with_phases
from convbench_kernels.cuda.launch import (
    WARP,
    grid_1d,
    index_type,
    launcher,
    min_blocks,
    splitter,
    unflattener,
)

__all__ = ["supports", "prepare", "workspace", "launches", "plan_fft", "plan_fft2",
           "fft_launches", "line_stride", "transform_size"]

TPB = 128  # threads per block of the elementwise kernels and at most of the FFT kernel
SMEM_BYTES = 16384  # bytes of one of the two shared-memory ping-pong buffers


def _smem_points(cdtype):
    """Points per shared buffer: 2048 complex64, 1024 complex128."""
    return SMEM_BYTES // np.dtype(cdtype).itemsize


def _complex_dtype(dtype):
    return np.dtype(np.complex64 if np.dtype(dtype) == np.float32 else np.complex128)


def transform_size(size, pad_before, pad_after):
    """The power of two ``>= max(size + pad_before, size + pad_after)`` (see the docstring)."""
    need = max(size + pad_before, size + pad_after, 1)
    return 1 << (need - 1).bit_length()


# ----------------------------------------------------------------------------- FFT kernels
@cache
def _fft_shared_kernel(smem, ix):
    """The shared-memory Stockham kernel with two buffers of ``smem`` points (a constant),
    splitting line indices in ``ix`` (`convbench_kernels.cuda.launch.index_type`)."""
    size = 2 * smem  # a closure constant: numba needs a literal shape, not an expression
    split = splitter(ix)

    @cuda.jit
    def fft_shared(a, tw, log_n, inverse, rows_per_block, ld):
        buf = cuda.shared.array(size, a.dtype)  # [0, smem) and [smem, 2 smem)
        nb, n, nm = a.shape
        lines = nb * nm
        first = cuda.blockIdx.x * rows_per_block
        nl = min(rows_per_block, lines - first)
        tid = cuda.threadIdx.x
        nth = cuda.blockDim.x
        # while loops: a range() with a run-time step divides (64-bit) to count its trips
        e = tid
        while e < nl * n:
            if nm == 1:  # rows: a line is contiguous
                li = e >> log_n
                j = e & (n - 1)
            else:  # columns: neighbouring lines are neighbours in memory
                j, li = split(e, nl)
            b, m = split(first + li, nm)
            buf[li * ld + j] = a[b, j, m]
            e += nth
        cuda.syncthreads()
        # sizes are powers of two: shifts and masks, not 64-bit divisions
        half = n >> 1
        src = 0
        for t in range(log_n):
            dst = smem - src
            s = 1 << t
            e = tid
            while e < nl * half:
                li = e >> (log_n - 1)
                bf = e & (half - 1)
                sp = (bf >> t) << t  # s p
                base = li * ld + (bf & (s - 1))  # line start + q
                x0 = buf[src + base + sp]
                x1 = buf[src + base + sp + half]  # s (p + m) = s p + N/2
                w = tw[sp]
                if inverse:
                    w = w.conjugate()
                buf[dst + base + 2 * sp] = x0 + x1
                buf[dst + base + 2 * sp + s] = (x0 - x1) * w
                e += nth
            cuda.syncthreads()
            src = dst
        e = tid
        while e < nl * n:
            if nm == 1:
                li = e >> log_n
                j = e & (n - 1)
            else:
                j, li = split(e, nl)
            b, m = split(first + li, nm)
            a[b, j, m] = buf[src + li * ld + j]
            e += nth

    return fft_shared


@cache
def _fft_stage_kernel(ix):
    """The global-memory Stockham stage, splitting its flat index in ``ix``."""
    split = splitter(ix)

    @cuda.jit
    def fft_stage(src, dst, tw, t, inverse):
        """Stockham stage ``t`` (stride ``s = 2**t``) in global memory: one thread per
        butterfly."""
        nb, n, nm = src.shape
        half = n >> 1
        s = 1 << t
        i = cuda.grid(1)
        if i >= nb * half * nm:
            return
        line, mm = split(i, nm)  # line index along axis 2 fastest: coalesced for columns
        b, bf = split(line, half)
        p = bf >> t  # powers of two: shifts and masks
        q = bf & (s - 1)
        m = half >> t
        x0 = src[b, q + s * p, mm]
        x1 = src[b, q + s * (p + m), mm]
        w = tw[p * s]
        if inverse:
            w = w.conjugate()
        dst[b, q + 2 * s * p, mm] = x0 + x1
        dst[b, q + s * (2 * p + 1), mm] = (x0 - x1) * w

    return fft_stage


@cuda.jit
def _copy(src, dst):
    i = cuda.grid(1)
    if i < dst.size:
        dst[i] = src[i]


def _twiddles(n, cdtype):
    """``exp(-2 pi i j / n)`` for j < n/2 (one entry for n = 1), float64 rounded once."""
    j = np.arange(max(n // 2, 1))
    return cuda.to_device(np.exp(-2j * np.pi * j / n).astype(cdtype))


def plan_fft(shape, dtype, inverse=False, shared=None, scratch=None):
    """Plan an in-place batched FFT along axis 1 of (B, N, M) complex device arrays.

    Parameters
    ----------
    shape : (B, N, M)
        N a power of two.
    dtype : complex64 or complex128 (or float32 / float64, meaning their complex types)
    inverse : bool
        Unnormalised inverse (``N * numpy.fft.ifft``).
    shared : bool or None
        Shared-memory kernel (one launch) or one global-memory launch per stage; None picks
        shared when N fits (``N <= SMEM_BYTES / itemsize``).
    scratch : device array or None
        For the global-memory path: a complex buffer of at least B*N*M points (allocated
        when None).

    Returns
    -------
    run : callable
        ``run(a)`` transforms ``a`` in place (launches only).
    """
    nb, n, nm = (int(v) for v in shape)
    if n & (n - 1) or n < 1:
        raise ValueError(f"FFT length must be a power of two, got {n}")
    cdtype = _complex_dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(dtype)
    log_n = n.bit_length() - 1
    tw = _twiddles(n, cdtype)
    smem = _smem_points(cdtype)
    if shared is None:
        shared = n <= smem
    if shared and n > smem:
        raise ValueError(f"FFT length {n} exceeds the shared-memory limit {smem}")
    launch = {name: (grid, block) for name, grid, block in fft_launches(shape, cdtype, shared)}
    ix = index_type(nb * n * nm)
    if shared:
        ld = line_stride(n, nm, smem)
        rows = _lines_per_block(nb, n, nm, smem)
        kernel = launcher(_fft_shared_kernel(smem, ix), *launch["fft_shared"])

        def run(a):
            kernel(a, tw, log_n, inverse, rows, ld)

        return run
    size = nb * n * nm
    if scratch is None:
        scratch = cuda.device_array(size, dtype=cdtype)
    tmp = scratch[:size].reshape(nb, n, nm)
    flat_tmp = scratch[:size]
    stage = launcher(_fft_stage_kernel(ix), *launch["fft_stage"]) if log_n else None
    copy = launcher(_copy, *launch["copy"]) if "copy" in launch else None

    def run(a):
        src, dst = a, tmp
        for t in range(log_n):
            stage(src, dst, tw, t, inverse)
            src, dst = dst, src
        if copy is not None:
            copy(flat_tmp, a.reshape(size))

    return run


def line_stride(n, nm, smem):
    """Points between consecutive lines in the shared buffer: ``n + 1`` for columns.

    A column pass loads and stores the same point of consecutive lines from consecutive
    threads; with lines ``n`` apart (a power of two) those addresses share a bank: up to
    16-way conflicts.  One point of padding puts consecutive lines in consecutive banks (a
    complex64 point spans 2 banks, complex128 4, and the hardware serves 8-byte accesses by
    half-warps and 16-byte ones by quarter-warps, which then touch distinct banks).  Rows
    need none (consecutive threads read consecutive points), nor a line that fills the
    buffer alone."""
    return n + 1 if nm > 1 and n < smem else n


def _lines_per_block(nb, n, nm, smem, sms=None):
    """Lines the shared-memory kernel transforms per block: as many as fit, or fewer so that
    the launch gives every SM 2 blocks (`convbench_kernels.cuda.launch.min_blocks`), but
    never so few that a block has less than a warp of butterflies (``R N / 2 >= 32``)."""
    lines = nb * nm
    fit = smem // line_stride(n, nm, smem)
    spread = max(lines // min_blocks(sms), -(-2 * WARP // n))
    return max(1, min(fit, lines, spread))


def fft_launches(shape, dtype, shared=None, sms=None):
    """``[(kernel, grid, block)]``: the launches of one `plan_fft` transform of ``shape``
    (B, N, M) (``fft_stage`` once per stage, then ``copy`` when the stages are odd)."""
    nb, n, nm = (int(v) for v in shape)
    cdtype = _complex_dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(dtype)
    smem = _smem_points(cdtype)
    if shared is None:
        shared = n <= smem
    if shared:
        rows = _lines_per_block(nb, n, nm, smem, sms)
        threads = min(TPB, max(1, rows * n // 2))
        return [("fft_shared", (-(-(nb * nm) // rows),), (threads,))]
    log_n = n.bit_length() - 1
    stages = [("fft_stage", *grid_1d(nb * max(n // 2, 1) * nm, TPB, sms))] * log_n
    return stages + ([("copy", *grid_1d(nb * n * nm, TPB, sms))] if log_n % 2 else [])


def plan_fft2(shape, dtype, inverse=False, shared=None, scratch=None):
    """Plan an in-place 2-D FFT of every plane of (B, P, Q) complex device arrays: rows, then
    columns.  Parameters as `plan_fft`; ``run(a)`` transforms ``a`` in place."""
    nb, p, q = (int(v) for v in shape)
    rows = plan_fft((nb * p, q, 1), dtype, inverse, shared, scratch)
    cols = plan_fft((nb, p, q), dtype, inverse, shared, scratch)

    def run(a):
        rows(a.reshape(nb * p, q, 1))
        cols(a)

    return run


# ----------------------------------------------------------------------------- conv kernels
@cache
def _conv_kernels(ix):
    """``(gather, reduce, crop)``, splitting their flat indices in ``ix``
    (`convbench_kernels.cuda.launch.index_type`)."""
    unflat = unflattener(ix)

    @cuda.jit
    def gather(x, z, czero, ione):
        """z[b, j] = x[b, 2j] + i x[b, 2j+1] at [0, h) x [0, w), zero elsewhere."""
        nb, c, h, w = x.shape
        _, c2, p, q = z.shape
        i = cuda.grid(1)
        if i >= nb * c2 * p * q:
            return
        b, j, row, col = unflat(i, c2, p, q)
        v = czero
        if row < h and col < w:
            v = x[b, 2 * j, row, col] + czero
            if 2 * j + 1 < c:
                v += x[b, 2 * j + 1, row, col] * ione
        z[b, j, row, col] = v

    @cuda.jit
    def reduce(z, u, o, pair0, spans, czero):
        """o[b, kp, f] = sum_j u[kp, j, 0, f] z[b, p0 + j, f]
        + u[kp, j, 1, f] conj z[b, p0 + j, -f].

        z (n, c2, P, Q); u (k2, span, 2, P, Q); o (n, k2, P, Q); pair0, spans (k2,) int64.
        """
        nb, k2, p, q = o.shape
        i = cuda.grid(1)
        if i >= nb * k2 * p * q:
            return
        b, kp, f1, f2 = unflat(i, k2, p, q)
        m1 = (p - f1) & (p - 1)  # -f (P, Q powers of two)
        m2 = (q - f2) & (q - 1)
        p0 = pair0[kp]
        acc = czero
        for j in range(spans[kp]):
            acc += u[kp, j, 0, f1, f2] * z[b, p0 + j, f1, f2]
            acc += u[kp, j, 1, f1, f2] * z[b, p0 + j, m1, m2].conjugate()
        o[b, kp, f1, f2] = acc

    @cuda.jit
    def crop(o, out, sh, sw, pt, pl):
        """out[b, k, i, j] = (real if k even else imag) o[b, k // 2, (i sh - pt) mod P, ...]."""
        nb, k, oh, ow = out.shape
        p, q = o.shape[2], o.shape[3]
        i = cuda.grid(1)
        if i >= nb * k * oh * ow:
            return
        b, kk, r, c = unflat(i, k, oh, ow)
        v = o[b, kk >> 1, (r * sh - pt) & (p - 1), (c * sw - pl) & (q - 1)]
        if kk & 1 == 0:
            out[b, kk, r, c] = v.real
        else:
            out[b, kk, r, c] = v.imag

    return gather, reduce, crop


# ----------------------------------------------------------------------------- host side
def _geometry(spec):
    """Transform size and the channel-pair span of every output pair.

    Output pair ``kp`` holds channels ``2kp`` and ``min(2kp + 1, k - 1)``; it sums the input
    channels of their groups, ``[ga cg, (gb + 1) cg)``, i.e. channel pairs
    ``pair0[kp] .. pair0[kp] + spans[kp] - 1``.
    """
    pt, pb, pl, pr = spec.pads
    p = transform_size(spec.h, pt, pb)
    q = transform_size(spec.w, pl, pr)
    k2 = -(-spec.k // 2)
    kp = np.arange(k2)
    ga = (2 * kp) // spec.kg
    gb = np.minimum(2 * kp + 1, spec.k - 1) // spec.kg
    pair0 = (ga * spec.cg) // 2
    spans = ((gb + 1) * spec.cg - 1) // 2 - pair0 + 1
    return p, q, k2, pair0.astype(np.int64), spans.astype(np.int64)


def _filter_spectra(w, spec, p, q, pair0, spans, cdtype):
    """u (k2, span, 2, P, Q): the packed conjugate filter spectra, float64 rounded once.

    Output pair kp: ``V[c] = G_{2kp}[c] + i G_{2kp+1}[c]`` over its channel span (zero for a
    channel outside an output's group), ``G = conj(FFT2(wd)) / (P Q)``; channel pair
    ``(e, o)``: ``U1 = (V_e - i V_o) / 2``, ``U2 = (V_e + i V_o) / 2``.
    """
    k, cg = spec.k, spec.cg
    k2, span = len(pair0), int(spans.max())
    u = np.zeros((k2, span, 2, p, q), dtype=cdtype)
    w64 = np.asarray(w, dtype=np.float64)
    for kp in range(k2):
        c0 = 2 * int(pair0[kp])
        v = np.zeros((2 * span, p, q), dtype=np.complex128)
        for kk, scale in ((2 * kp, 1.0), (2 * kp + 1, 1j)):
            if kk >= k:
                continue
            wd = np.zeros((cg, p, q))
            for a in range(spec.r):
                for b in range(spec.s):
                    wd[:, (a * spec.dh) % p, (b * spec.dw) % q] += w64[kk, :, a, b]
            g0 = (kk // spec.kg) * cg - c0
            v[g0:g0 + cg] += scale * np.conj(np.fft.fft2(wd)) / (p * q)
        ve, vo = v[0::2], v[1::2]
        u[kp, :, 0] = (ve - 1j * vo) / 2
        u[kp, :, 1] = (ve + 1j * vo) / 2
    return u


def workspace(spec):
    """Device bytes `prepare` allocates beyond input and output: the packed input and
    output spectra, the filter spectra, twiddles, and the global-FFT scratch when P or Q
    exceeds the shared-memory length."""
    cdtype = _complex_dtype(spec.dtype)
    p, q, k2, pair0, spans = _geometry(spec)
    c2 = -(-spec.c // 2)
    planes = spec.n * (c2 + k2) * p * q
    spectra = k2 * int(spans.max()) * 2 * p * q
    scratch = spec.n * max(c2, k2) * p * q if max(p, q) > _smem_points(cdtype) else 0
    twiddles = 4 * (max(p, q) // 2 + 1)
    return cdtype.itemsize * (planes + spectra + scratch + twiddles) + 16 * k2


def _elementwise_launches(spec, sms=None):
    """``{kernel: (grid, block)}`` of the gather, reduction and crop: one thread an element."""
    p, q, k2, _, _ = _geometry(spec)
    c2 = -(-spec.c // 2)
    return {"gather": grid_1d(spec.n * c2 * p * q, TPB, sms),
            "reduce": grid_1d(spec.n * k2 * p * q, TPB, sms),
            "crop": grid_1d(spec.n * spec.k * spec.oh * spec.ow, TPB, sms)}


def launches(spec, sms=None):
    """``[(kernel, grid, block)]``: the launches of one call on ``spec``, in order."""
    p, q, k2, _, _ = _geometry(spec)
    c2 = -(-spec.c // 2)
    cdtype = _complex_dtype(spec.dtype)
    el = _elementwise_launches(spec, sms)

    def fft2(planes):
        return (fft_launches((planes * p, q, 1), cdtype, sms=sms)
                + fft_launches((planes, p, q), cdtype, sms=sms))

    return ([("gather", *el["gather"])] + fft2(spec.n * c2) + [("reduce", *el["reduce"])]
            + fft2(spec.n * k2) + [("crop", *el["crop"])])


def prepare(w, spec):
    """Transform the filters once and allocate every device buffer.

    Parameters
    ----------
    w : numpy.ndarray (k, c // groups, r, s), spec.dtype (host)
    spec : ConvSpec-like

    Returns
    -------
    compute : callable
        ``compute(x, out)`` on device arrays x (n, c, h, w) and out (n, k, oh, ow): launches
        only.  ``compute.plan`` records the transform size.
    """
    dtype = np.dtype(spec.dtype)
    cdtype = _complex_dtype(dtype)
    p, q, k2, pair0, spans = _geometry(spec)
    c2 = -(-spec.c // 2)
    n = spec.n
    pt, _, pl, _ = spec.pads
    d_u = cuda.to_device(_filter_spectra(w, spec, p, q, pair0, spans, cdtype))
    d_pair0 = cuda.to_device(pair0)
    d_spans = cuda.to_device(spans)
    z = cuda.device_array((n, c2, p, q), dtype=cdtype)
    o = cuda.device_array((n, k2, p, q), dtype=cdtype)
    scratch = None
    if max(p, q) > _smem_points(cdtype):
        scratch = cuda.device_array(n * max(c2, k2) * p * q, dtype=cdtype)
    # 2-D transforms as rows then columns, on views made once
    z_rows, z_cols = z.reshape(n * c2 * p, q, 1), z.reshape(n * c2, p, q)
    o_rows, o_cols = o.reshape(n * k2 * p, q, 1), o.reshape(n * k2, p, q)
    fwd_rows = plan_fft(z_rows.shape, cdtype, scratch=scratch)
    fwd_cols = plan_fft(z_cols.shape, cdtype, scratch=scratch)
    inv_rows = plan_fft(o_rows.shape, cdtype, inverse=True, scratch=scratch)
    inv_cols = plan_fft(o_cols.shape, cdtype, inverse=True, scratch=scratch)
    czero = cdtype.type(0)
    ione = cdtype.type(1j)
    shapes = _elementwise_launches(spec)
    kernels = _conv_kernels(index_type(n * max(c2, k2) * p * q, n * spec.k * spec.oh * spec.ow))
    gather, reduce, crop = (launcher(kernel, *shapes[name]) for kernel, name
                            in zip(kernels, ("gather", "reduce", "crop"), strict=True))
    sh, sw = spec.sh, spec.sw

    def input_transform(x, out):
        gather(x, z, czero, ione)
        fwd_rows(z_rows)
        fwd_cols(z_cols)

    def multiply(x, out):
        reduce(z, d_u, o, d_pair0, d_spans, czero)

    def output_transform(x, out):
        inv_rows(o_rows)
        inv_cols(o_cols)
        crop(o, out, sh, sw, pt, pl)

    compute = with_phases(("input transform", input_transform), ("multiply", multiply),
                          ("output transform", output_transform))

    compute.plan = dict(p=p, q=q, pairs=(c2, k2), span=int(spans.max()),
                        shared_fft=max(p, q) <= _smem_points(cdtype))
    return compute

