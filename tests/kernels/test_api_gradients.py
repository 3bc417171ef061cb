"""The gradients and the transposed convolution in the public API: PyTorch's semantics (its
argument order, every padding form), against the float64 oracles and PyTorch where installed,
and clear errors."""

import numpy as np
import pytest

import convbench
from convbench_kernels.reference import reference_conv2d_input, reference_conv2d_weight

PADDINGS = ["valid", "same", 2, (1, 2), (0, 2, 1, 0)]


def arrays(n=2, c=4, h=9, w=8, k=6, r=3, s=3, groups=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(np.float32),
            rng.standard_normal((k, c // groups, r, s)).astype(np.float32))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("algo", ["direct", "im2col", "fft"])
def test_gradients_match_the_oracles_for_every_padding_form(algo, padding):
    x, w = arrays()
    geo = dict(stride=1 if padding == "same" else 2, padding=padding, groups=2)
    y = convbench.conv2d(x, w, **geo)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    spec = convbench.ConvSpec(n=2, c=4, h=9, w=8, k=6, r=3, **geo)
    ref = dict(stride=(spec.sh, spec.sw), pads=spec.pads, dilation=(1, 1), groups=2)
    dx = convbench.conv2d_input(x.shape, w, dy, algo=algo, **geo)
    dw = convbench.conv2d_weight(x, w.shape, dy, algo=algo, **geo)
    np.testing.assert_allclose(dx, reference_conv2d_input(dy, w, (9, 8), **ref), atol=2e-5)
    np.testing.assert_allclose(dw, reference_conv2d_weight(x, dy, (3, 3), **ref), atol=1e-4)


def test_gradients_and_transposed_convolution_match_torch():
    torch = pytest.importorskip("torch")
    x, w = arrays(n=1, c=6, h=11, w=10, k=4, r=3, s=2, groups=2)
    geo = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    y = convbench.conv2d(x, w, **geo)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    tw, tdy, tx = (torch.from_numpy(a) for a in (w, dy, x))
    np.testing.assert_allclose(convbench.conv2d_input(x.shape, w, dy, **geo),
                               torch.nn.grad.conv2d_input(x.shape, tw, tdy, **geo).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(convbench.conv2d_weight(x, w.shape, dy, algo="fft", **geo),
                               torch.nn.grad.conv2d_weight(tx, w.shape, tdy, **geo).numpy(),
                               atol=1e-4)
    up = np.random.default_rng(3).standard_normal((2, 8, 5, 6)).astype(np.float32)
    wt = np.random.default_rng(4).standard_normal((8, 3, 4, 4)).astype(np.float32)
    for kw in (dict(stride=2, padding=1), dict(stride=2, output_padding=1),
               dict(stride=3, padding=(1, 2), output_padding=(2, 0)),
               dict(stride=1, dilation=2, output_padding=1), dict(groups=2, stride=2)):
        wk = wt[:, :1] if "groups" in kw else wt  # 2 groups of 4 inputs, 1 output each
        want = torch.nn.functional.conv_transpose2d(torch.from_numpy(up),
                                                    torch.from_numpy(np.ascontiguousarray(wk)),
                                                    **kw).numpy()
        for algo in ("direct", "fft"):
            got = convbench.conv_transpose2d(up, wk, algo=algo, **kw)
            assert got.shape == want.shape, kw
            np.testing.assert_allclose(got, want, atol=2e-4, err_msg=str(kw))


def test_transposed_convolution_is_the_gradient_of_the_input_it_names():
    x, w = arrays(n=1, c=3, h=5, w=5, k=6, r=2, s=2, groups=1)
    up = convbench.conv_transpose2d(np.ones((1, 6, 4, 4), np.float32), w, stride=2)
    assert up.shape == (1, 3, 8, 8)
    dx = convbench.conv2d_input((1, 3, 8, 8), w, np.ones((1, 6, 4, 4), np.float32), stride=2)
    np.testing.assert_array_equal(up, dx)


@pytest.mark.parametrize(("call", "message"), [
    (lambda x, w: convbench.conv2d_input(x.shape, w, np.ones((2, 6, 3, 3), np.float32),
                                         groups=2),
     r"dy must have the forward output's shape \(2, 6, 7, 6\) for problem n2c4h9w8k6r3s3"),
    (lambda x, w: convbench.conv2d_weight(x, (6, 3, 3, 3), np.ones((2, 6, 7, 6), np.float32),
                                          groups=2),
     r"w must have shape \(k, c/groups, r, s\) = \(k, 4/2, r, s\)"),
    (lambda x, w: convbench.conv2d_weight(x, (6, 2, 3), x, groups=2),
     r"weight_shape must be 4 integers"),
    (lambda x, w: convbench.conv_transpose2d(x, w[:4], stride=2, output_padding=2),
     r"output_padding must be smaller than the stride or the dilation, got 2 on h"),
    (lambda x, w: convbench.conv_transpose2d(x, w[:4], padding="same"),
     r"padding must be an int, \(ph, pw\) or .* for conv_transpose2d, got 'same'"),
    (lambda x, w: convbench.conv_transpose2d(x, w, stride=2),
     r"w must have shape \(c_in, k_out/groups, r, s\) = \(4, \.\.\.\)"),
    (lambda x, w: convbench.conv2d_weight(x, (6, 2, 3, 3), np.ones((2, 6, 7, 6), np.float32),
                                          groups=2, algo="separable"),
     r"algo 'separable' is the separable operator"),
    (lambda x, w: convbench.conv2d_weight(x, (6, 2, 3, 3), np.ones((2, 6, 4, 3), np.float32),
                                          stride=2, groups=2, algo="winograd_f43"),
     r"winograd_f43 does not compute n2c4h9w8k6r3s3u2p0d1g2-bwd_w: bwd_w of a layer it does "
     r"not compute: winograd needs stride 1, got 2x2"),
    (lambda x, w: convbench.conv2d_input(x.shape, w, np.ones((2, 6, 7, 6), np.float32),
                                         groups=2, algo="depthwise"),
     r"depthwise does not compute .*-bwd_d: bwd_d of a layer it does not compute: depthwise "
     r"needs groups == c"),
])
def test_bad_input_is_one_clear_value_error(call, message):
    x, w = arrays()
    with pytest.raises(ValueError, match=message):
        call(x, w)
