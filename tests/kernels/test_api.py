"""The public API: argument forms, the input conversion rule, and clear errors."""

import numpy as np
import pytest

import convbench
from convbench import ConvSpec, conv2d, reference_conv2d, registry, separable_conv2d
from tests.cases import random_arrays


def test_registry_names_as_designed():
    names = [a.name for a in convbench.algorithms("cpu") if a.family != "baseline"]
    assert names == ["direct", "im2col", "fft", "fft_tiled", "winograd_f23", "winograd_f43",
                     "winograd_f63", "depthwise", "separable"]
    cpu_only = {"fft_tiled"}  # the CUDA fft tiles its shared-memory transforms itself
    assert [a.name for a in convbench.algorithms("cuda")] == [
        n for n in names if n not in cpu_only]
    # then the baselines whose package is installed (tests/unit/test_baselines.py)
    assert [a.name for a in convbench.algorithms("cpu")][len(names):] == [
        a.name for a in registry.baseline_entries()]
    assert {a.device for a in convbench.algorithms()} == {"cpu", "cuda"}
    assert all(a.tolerance["float64"] < a.tolerance["float32"] for a in convbench.algorithms())


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    from convbench import devices

    monkeypatch.setattr(devices, "cuda_status", lambda: (False, "no CUDA device (test)"))
    x, w = random_arrays(ConvSpec(c=4, h=8, k=4, r=3))
    with pytest.raises(ValueError, match=r"^device 'cuda' cannot be used: no CUDA device"):
        conv2d(x, w, device="cuda")


def _strided(shape, seed):
    """A view of ``shape`` that is not contiguous in any axis."""
    big = np.random.default_rng(seed).standard_normal([2 * d for d in shape]).astype(np.float32)
    return big[::2, ::2, ::2, ::2]


@pytest.mark.parametrize("algo", convbench.algorithms("cpu"), ids=lambda a: a.name)
def test_non_contiguous_views(algo):
    x = _strided((2, 4, 10, 11), 3)
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    if algo.operator == "separable":
        wd, wp = _strided((4, 1, 3, 3), 4), _strided((5, 4, 1, 1), 5)
        got = separable_conv2d(x, wd, wp, padding=1)
        want = reference_conv2d(reference_conv2d(x, wd, padding=1, groups=4), wp)
    else:
        groups = 4 if algo.family == "depthwise" else 1
        w = _strided((8, 4 // groups, 3, 3), 4).transpose(0, 1, 3, 2)  # and transposed
        got = conv2d(x, w, padding=1, groups=groups, algo=algo.name)
        want = reference_conv2d(x, w, padding=1, groups=groups)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_array_likes_and_conversion_rule():
    x = np.arange(2 * 5 * 5).reshape(1, 2, 5, 5).tolist()  # nested lists of ints
    w = [[[[1, 0], [0, -1]]] * 2]  # (1, 2, 2, 2) ints
    out = conv2d(x, w)
    assert out.dtype == np.float64  # integers only: float64, exactly
    np.testing.assert_array_equal(out, reference_conv2d(x, w))
    assert conv2d(np.asarray(x, np.float32), w).dtype == np.float32  # ints take the float's type
    assert conv2d(np.asarray(x, np.float16), np.asarray(w, np.float16)).dtype == np.float32
    assert conv2d(np.asarray(x, np.float32), np.asarray(w, np.float64)).dtype == np.float64


def test_stride_padding_dilation_forms_agree():
    spec = ConvSpec(c=3, h=12, w=11, k=4, r=3, s=2)
    x, w = random_arrays(spec)
    a = conv2d(x, w, stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2))
    b = conv2d(x, w, stride=[2, 1], padding=[1, 2, 0, 1], dilation=[1, 2], algo="im2col")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert a.shape == (1, 4, (12 + 3 - 3) // 2 + 1, 11 + 1 - 3 + 1)


def test_separable_with_multiplier_matches_two_reference_stages():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    wd = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)  # multiplier 2
    wp = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
    got = separable_conv2d(x, wd, wp, stride=2, padding=1)
    want = reference_conv2d(reference_conv2d(x, wd, stride=2, padding=1, groups=4), wp)
    assert got.shape == (2, 5, 5, 4)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, w: conv2d(x, w, algo="winograd"), "algo must be one of direct, im2col"),
        (lambda x, w: conv2d(x, w, algo="winograd_f43", stride=2), "winograd_f43 does not"),
        (lambda x, w: conv2d(x, w, algo="depthwise"), "depthwise does not"),
        (lambda x, w: conv2d(x, w, algo="separable"), "separable_conv2d"),
        (lambda x, w: conv2d(x, w, device="tpu"), "device must be one of cpu, cuda"),
        (lambda x, w: conv2d(x, w, groups=2), "w must have shape (k, c/groups"),
        (lambda x, w: conv2d(x, w, stride=0), "stride"),
        (lambda x, w: conv2d(x, w, padding="full"), "padding"),
        (lambda x, w: conv2d(x[0], w), "x must be 4-D"),
        (lambda x, w: conv2d(x.astype(complex), w), "real numbers"),
        (lambda x, w: conv2d(x[:, :, :2, :2], w), "larger than|more than the padded input"),
    ],
)
def test_errors_are_value_errors_naming_the_problem(call, message):
    x, w = random_arrays(ConvSpec(c=4, h=8, k=4, r=3))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(x, w)
