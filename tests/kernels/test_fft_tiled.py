"""The tiled FFT's transforms against numpy.fft, every tile size through the named cases, and
its tile choice."""

import dataclasses

import numpy as np
import pytest

from convbench import registry
from convbench.spec import ConvSpec
from convbench_kernels.cpu import fft_tiled
from convbench_kernels.cpu.common import carve
from convbench_kernels.cpu.target import current, token
from tests.cases import CASES, random_arrays
from tests.kernels.test_algorithms import reference, relative_error

TOLERANCE = registry.get("fft_tiled").tolerance


@pytest.mark.parametrize("t", fft_tiled.TILES)
@pytest.mark.parametrize("tb, stream, parts", [(3, False, 2), (8, False, 2), (8, True, 2),
                                               (3, False, 3), (8, True, 3)])
def test_forward_transform_is_rfft2_of_each_tile(t, tb, stream, parts):
    """`_forward` writes, per tile and channel, numpy's rfft2 of the patch the tile reads
    (padding as zeros), in float64 to rounding: runs of ``tb`` tiles by scalars (3) or whole
    vectors (8, the last run partial), cached or streamed stores; with three parts (Gauss's
    form) the sums of the real and imaginary parts too."""
    spec = ConvSpec(n=2, c=5, h=t + 3, w=t + 1, k=1, r=3, padding=(1, 2, 0, 1),
                    dtype="float64")
    rng = np.random.default_rng(t)
    x = rng.standard_normal(spec.input_shape)
    mh = mw = t - 2
    nth, ntw = -(-spec.oh // mh), -(-spec.ow // mw)
    h = t // 2 + 1
    nt = spec.n * nth * ntw
    vl = current().lanes(8)
    rows, tw, order, _ = fft_tiled._dft(t, mw, np.dtype(np.float64))
    xs, scratch = carve(np.dtype(np.float64), (1, t * h, parts, spec.c, -(-nt // 8) * 8),
                        (2, tb * 2 * (t * t + 2 * t * h)))
    # jobs of tb tiles x 2 channels: partial blocks of both
    fft_tiled._forward(x, 1, 0, mh, mw, nth, ntw, tb, 2, rows, tw, order, scratch, xs, stream,
                       token(vl))
    xs = xs[..., :nt]
    if parts == 3:
        np.testing.assert_allclose(xs[:, :, 2], xs[:, :, 0] + xs[:, :, 1], rtol=0, atol=0)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2 + t), (0, 1 + t)))
    got = (xs[:, :, 0] + 1j * xs[:, :, 1]).reshape(t, h, spec.c, spec.n, nth, ntw)
    for b in range(spec.n):
        for i in range(nth):
            for j in range(ntw):
                patch = xp[b, :, i * mh:i * mh + t, j * mw:j * mw + t]
                want = np.fft.rfft2(patch)  # (c, t, h)
                err = np.abs(got[:, :, :, b, i, j].transpose(2, 0, 1) - want).max()
                assert err < 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("t", fft_tiled.TILES)
@pytest.mark.parametrize("inverse", [False, True])
def test_column_butterflies_are_the_dft(t, inverse):
    """`_dif_columns` on a (T, L) complex column is numpy's fft (or T times its ifft) along
    the first axis, each frequency u left in row ``order[u]``."""
    _, tw, order, _ = fft_tiled._dft(t, t, np.dtype(np.float64))
    rng = np.random.default_rng(t)
    z = rng.standard_normal((t, 5)) + 1j * rng.standard_normal((t, 5))
    re, im = z.real.copy(), z.imag.copy()
    fft_tiled._dif_columns(re, im, tw[int(inverse)])
    got = (re + 1j * im)[order]
    want = t * np.fft.ifft(z, axis=0) if inverse else np.fft.fft(z, axis=0)
    assert sorted(order) == list(range(t))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * t)


@pytest.mark.parametrize("t", fft_tiled.TILES)
def test_inverse_passes_invert_the_forward_transform(t):
    """The inverse's column butterflies and its row matrix (valid outputs only, 1/T^2 folded
    in; real-part rows, then imaginary) give numpy's irfft2 of a plane's rfft2."""
    mh, mw = t - 2, t - 4
    _, tw, order, irows = fft_tiled._dft(t, mw, np.dtype(np.float64))
    rng = np.random.default_rng(t)
    plane = rng.standard_normal((t, t))
    spec = np.fft.rfft2(plane).T  # (h, t): columns of the spectrum
    re, im = spec.real.copy(), spec.imag.copy()
    for v in range(len(spec)):
        fft_tiled._dif_columns(re[v][:, None], im[v][:, None], tw[1])
    rows = np.concatenate([re, im])[:, order[:mh]].T  # (mh, 2h)
    np.testing.assert_allclose(rows @ irows, plane[:mh, :mw], atol=1e-13)


@pytest.mark.parametrize("t", fft_tiled.TILES)
@pytest.mark.parametrize("case", [c for c in sorted(CASES)
                                  if fft_tiled.supports(CASES[c]) is None])
def test_every_tile_size_matches_the_reference(case, t):
    spec = CASES[case]
    re, se = fft_tiled._extent(spec)
    if max(re, se) > t // 2:
        with pytest.raises(ValueError, match="fft_tiled tile must be one of"):
            fft_tiled.prepare(np.zeros(spec.weight_shape, spec.dtype), spec, {"tile": t})
        return
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, spec.dtype)
    compute = fft_tiled.prepare(w, spec, {"tile": t})
    compute(x, out)
    assert compute.plan["tile"] == t
    err = relative_error(out, reference(spec, x, w))
    assert np.isfinite(out).all() and err <= TOLERANCE[spec.dtype], err


@pytest.mark.parametrize("t", [8, 16])
@pytest.mark.parametrize("case", [c for c in sorted(CASES)
                                  if fft_tiled.supports(CASES[c]) is None])
def test_gauss_form_matches_the_reference(case, t):
    """The channel GEMMs in Gauss's three-multiply form (forced from one tile) on every case
    the tiled FFT takes, against the float64 reference."""
    spec = CASES[case]
    if max(fft_tiled._extent(spec)) > t // 2:
        return
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, spec.dtype)
    compute = fft_tiled.prepare(w, spec, {"tile": t, "gauss": 1})
    compute(x, out)
    assert compute.plan["form"] == "gauss"
    err = relative_error(out, reference(spec, x, w))
    assert np.isfinite(out).all() and err <= TOLERANCE[spec.dtype], err


@pytest.mark.parametrize(("regs", "bits", "gauss", "nt", "want"), [
    (16, 256, False, 256, (6, 1, 8)), (16, 256, True, 256, (6, 2, 8)),
    (16, 256, True, 8, (14, 1, 8)), (32, 512, False, 64, (6, 2, 16)),
    (32, 512, False, 16, (14, 1, 16)), (32, 512, True, 256, (6, 4, 16)),
    (32, 512, True, 16, (30, 1, 16))])
def test_register_tiles_fit_the_register_file(regs, bits, gauss, nt, want, monkeypatch):
    """Complex tiles hold 2 kb nv accumulators, Gauss's real ones kb nv, beside their inputs
    and one broadcast; the wider tile only where it keeps enough rows and wastes no more
    padding columns."""
    target = dataclasses.replace(current(), vector_registers=regs, vector_bits=bits)
    monkeypatch.setattr(fft_tiled, "current", lambda: target)
    kb, nv, vl = fft_tiled.register_tile(nt, 4, gauss)
    assert (kb, nv, vl) == want
    per = 1 if gauss else 2
    assert per * kb * nv + per * nv + 1 <= regs


def test_gauss_form_needs_tiles_enough():
    """The parameter is the tile count from which Gauss's form runs; 0 never."""
    spec = ConvSpec(n=4, c=8, h=30, k=8, r=3, padding=1)  # 16 x 16 tiles: 3 x 3 an image
    assert fft_tiled._geometry(spec, {"tile": 16, "gauss": 36})["gauss"]
    assert not fft_tiled._geometry(spec, {"tile": 16, "gauss": 37})["gauss"]
    assert not fft_tiled._geometry(spec, {"tile": 16, "gauss": 0})["gauss"]


def test_supports_names_what_it_needs():
    assert "stride 1" in fft_tiled.supports(ConvSpec(c=2, h=8, k=2, r=3, stride=2))
    assert "at most 16" in fft_tiled.supports(ConvSpec(c=2, h=40, k=2, r=17))
    assert "got 17x17" in fft_tiled.supports(ConvSpec(c=2, h=40, k=2, r=5, dilation=4))
    assert fft_tiled.supports(ConvSpec(c=2, h=40, k=2, r=5, dilation=3)) is None
    assert fft_tiled.supports(ConvSpec(c=2, h=9, k=2, r=3, groups=2, dilation=2)) is None


def test_tile_choice_fits_the_filter_and_follows_the_spectra_cost():
    """The model takes a tile the filter fits in; a higher byte cost of the filter spectra
    never chooses a larger tile (larger tiles have more frequencies per filter)."""
    for r in (1, 3, 5, 9):
        for h, c in ((7, 512), (14, 256), (56, 64), (112, 32)):
            spec = ConvSpec(c=c, h=h, k=c, r=r, padding="same")
            sizes = [fft_tiled.choose_tile(spec, {"byte_cost": b}) for b in (0.0, 4.0, 64.0)]
            assert all(r <= t // 2 for t in sizes)
            assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_streamed_spectra_compute_the_same(dtype, monkeypatch):
    """Non-temporal stores of both spectra (forced on a problem small enough for cached ones):
    the same result within the tolerance, partial tile blocks and channel blocks included."""
    spec = ConvSpec(n=3, c=6, h=40, w=37, k=9, r=3, padding=1, dtype=dtype)
    x, w = random_arrays(spec)
    want = reference(spec, x, w)
    streamed = []

    def always(spectra, vl):
        aligned = spectra.ctypes.data % (vl * spectra.itemsize) == 0
        streamed.append(aligned and fft_tiled.TILE_BLOCK % vl == 0)
        return streamed[-1]

    monkeypatch.setattr(fft_tiled, "_streams", always)
    for t in (8, 16):
        out = np.full(spec.output_shape, np.nan, spec.dtype)
        fft_tiled.prepare(w, spec, {"tile": t})(x, out)
        assert relative_error(out, want) <= TOLERANCE[spec.dtype]
    assert streamed and all(streamed)
