"""ConvSpec: validation, derived quantities, ids and benchdnn descriptors."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convbench.spec import ConvSpec, out_size, same_padding


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        (dict(n=0), "n", ">= 1"),
        (dict(c=-1), "c", ">= 1"),
        (dict(h=0), "h", ">= 1"),
        (dict(w=0), "w", ">= 1"),
        (dict(k=0), "k", ">= 1"),
        (dict(r=0), "r", ">= 1"),
        (dict(n=1.5), "n", "positive integer"),
        (dict(n=True), "n", "positive integer"),
        (dict(stride=0), "stride", ">= 1"),
        (dict(stride=(1, 0)), "stride", ">= 1"),
        (dict(stride=(1, 2, 3)), "stride", "pair"),
        (dict(dilation=0), "dilation", ">= 1"),
        (dict(padding=-1), "padding", "'same'"),
        (dict(padding="full"), "padding", "'valid', 'same'"),
        (dict(padding=(1, 2, 3)), "padding", "(top, bottom, left, right)"),
        (dict(c=4, k=6, groups=4), "groups", "divide"),
        (dict(c=6, k=4, groups=4), "groups", "divide"),
        (dict(dtype="float16"), "dtype", "float32, float64"),
        (dict(dtype="int8"), "dtype", "float32, float64"),
        (dict(h=4, r=5), "r=5", "no larger than the padded input"),
        (dict(h=9, w=4, r=3, s=3, dilation=2), "s=3", "no larger than the padded input"),
    ],
)
def test_invalid_problems_name_the_field(kwargs, field, allowed):
    base = dict(n=1, c=4, h=8, k=4, r=3)
    with pytest.raises(ValueError) as err:
        ConvSpec(**{**base, **kwargs})
    msg = str(err.value)
    assert field in msg and allowed in msg
    assert "\n" not in msg


def test_filter_fits_once_padded():
    spec = ConvSpec(h=4, r=5, padding=1)  # 4 + 2 = 6 >= 5
    assert (spec.oh, spec.ow) == (2, 2)


def test_spec_is_frozen_and_hashable():
    spec = ConvSpec(c=3, h=8, k=4, r=3)
    with pytest.raises(AttributeError):
        spec.c = 4
    assert {spec: 1}[ConvSpec(c=3, h=8, k=4, r=3)] == 1


def test_canonical_forms_compare_equal():
    a = ConvSpec(h=8, r=3, stride=(2, 2), padding=(1, 1, 1, 1), dilation=[1, 1], dtype=np.float32)
    b = ConvSpec(h=8, r=3, stride=2, padding=1)
    assert a == b and a.id == b.id
    assert ConvSpec(h=8, r=3, padding=(1, 1, 2, 2)).padding == (1, 2)
    assert ConvSpec(h=8, r=3, padding="SAME").padding == "same"


@pytest.mark.parametrize(
    ("padding", "pads"),
    [("valid", (0, 0, 0, 0)), (2, (2, 2, 2, 2)), ((1, 3), (1, 1, 3, 3)),
     ((0, 1, 2, 3), (0, 1, 2, 3))],
)
def test_explicit_padding_forms(padding, pads):
    assert ConvSpec(h=9, w=9, r=3, padding=padding).pads == pads


@pytest.mark.parametrize(
    ("h", "r", "u", "d", "expect"),
    [
        (8, 2, 1, 1, (0, 1)),   # even filter: odd pixel at the bottom
        (8, 3, 1, 1, (1, 1)),
        (7, 3, 2, 1, (1, 1)),   # ceil(7/2)=4 outputs: (4-1)*2+3-7 = 2
        (8, 3, 2, 1, (0, 1)),   # (4-1)*2+3-8 = 1
        (8, 3, 1, 2, (2, 2)),   # dilated span 5
        (5, 1, 3, 1, (0, 0)),
    ],
)
def test_same_padding_matches_tensorflow_rule(h, r, u, d, expect):
    assert same_padding(h, r, u, d) == expect
    spec = ConvSpec(h=h, w=h, r=r, stride=u, dilation=d, padding="same")
    assert spec.oh == math.ceil(h / u)


def test_derived_quantities_resnet_layer():
    spec = ConvSpec(n=1, c=64, h=56, k=64, r=3, padding=1)
    assert spec.output_shape == (1, 64, 56, 56)
    assert spec.flops == 2 * 64 * 56 * 56 * 64 * 9
    assert spec.params == 64 * 64 * 9
    assert spec.min_bytes == 4 * (64 * 56 * 56 + 64 * 64 * 9 + 64 * 56 * 56)
    assert spec.id == "n1c64h56w56k64r3s3u1p1d1g1"


def test_derived_quantities_grouped_strided_dilated():
    spec = ConvSpec(n=2, c=6, h=11, w=9, k=4, r=3, s=2, stride=(2, 3), padding=(0, 1, 2, 0),
                    dilation=(2, 1), groups=2, dtype="float64")
    assert (spec.cg, spec.kg) == (3, 2)
    assert spec.oh == out_size(11, 1, 3, 2, 2) == (11 + 1 - 4 - 1) // 2 + 1 == 4
    assert spec.ow == (9 + 2 - 1 - 1) // 3 + 1 == 4
    assert spec.weight_shape == (4, 3, 3, 2)
    assert spec.flops == 2 * 2 * 4 * 4 * 4 * 3 * 3 * 2
    assert spec.min_bytes == 8 * (2 * 6 * 11 * 9 + 4 * 3 * 3 * 2 + 2 * 4 * 4 * 4)
    assert spec.id == "n2c6h11w9k4r3s2u2x3p0x1x2x0d2x1g2f64"


specs = st.builds(
    ConvSpec,
    n=st.integers(1, 4), c=st.sampled_from([2, 4, 6]), h=st.integers(9, 40),
    w=st.integers(9, 40), k=st.sampled_from([2, 4, 12]), r=st.integers(1, 5), s=st.integers(1, 5),
    stride=st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    padding=st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                      st.tuples(st.integers(0, 2), st.integers(0, 2)),
                      st.tuples(*[st.integers(0, 2)] * 4)),
    dilation=st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))),
    groups=st.sampled_from([1, 2]), dtype=st.sampled_from(["float32", "float64"]),
)


@given(specs)
def test_id_round_trips(spec):
    again = ConvSpec.parse(spec.id)
    assert again == spec and again.id == spec.id


@given(specs)
def test_output_size_formula(spec):
    pt, pb, pl, pr = spec.pads
    assert spec.oh == (spec.h + pt + pb - spec.dh * (spec.r - 1) - 1) // spec.sh + 1
    assert spec.ow == (spec.w + pl + pr - spec.dw * (spec.s - 1) - 1) // spec.sw + 1
    assert spec.oh >= 1 and spec.ow >= 1


def test_benchdnn_descriptor_with_name():
    spec = ConvSpec.parse('mb1ic64ih56oc64oh56kh3ph1n"resnet50:res2a"')
    assert spec == ConvSpec(n=1, c=64, h=56, k=64, r=3, padding=1)
    assert spec.name == "resnet50:res2a"


def test_benchdnn_canonical_form_with_underscores():
    spec = ConvSpec.parse('ic3ih227iw227_oc96oh55ow55_kh11kw11_sh4sw4ph0pw0_n"alexnet:conv1"')
    assert spec.n == 2  # benchdnn's default minibatch
    assert (spec.c, spec.h, spec.w, spec.k, spec.r, spec.s, spec.stride) == (
        3, 227, 227, 96, 11, 11, 4)
    assert spec.output_shape == (2, 96, 55, 55)


def test_benchdnn_defaults_deduce_padding_and_copy_width():
    # no ph: the padding that yields oh is deduced; w fields copy h fields
    spec = ConvSpec.parse("mb1ic64ih56oc64oh56kh3")
    assert spec.pads == (1, 1, 1, 1) and spec.w == 56 and spec.s == 3
    # no oh, no ph: padding 0
    assert ConvSpec.parse("mb1ic8ih10oc8kh3").oh == 8
    # benchdnn dilation counts inserted zeros
    assert ConvSpec.parse("mb1ic8ih20oc8kh3dh1").dilation == 2
    assert ConvSpec.parse("g2mb1ic8ih10oc4kh3sh2ph1").groups == 2


@pytest.mark.parametrize(
    ("text", "pads", "shape"),
    [
        # ph and an oh that is not symmetric: oh fixes the bottom padding (benchdnn's pb rule)
        ("mb1ic64ih56oc64oh57kh3ph1", (1, 2, 1, 2), (56, 56, 57, 57)),
        # oh without ph: ph = ((oh-1)sh - ih + kh) / 2 truncated, the rest goes to the bottom
        ("mb1ic4ih8oc4oh9kh3", (1, 2, 1, 2), (8, 8, 9, 9)),
        # both axes given, each on its own
        ("ic32_iw13ih36_oc8ow14oh17_pw6ph0_kw6kh4_sw1sh2", (0, 0, 6, 0), (36, 13, 17, 14)),
        # kernel windows starting in the padding
        ("mb1ic16_ih10oc8oh6_kh5sh5ph10", (10, 10, 10, 10), (10, 10, 6, 6)),
        # a negative padding after the input (> -stride): its last column is never read, so
        # the problem is the input without it; the output is benchdnn's
        ("mb1ic4ih9oc4oh4kh3sh2ph1", (1, 0, 1, 0), (8, 8, 4, 4)),
        # ... unless it differs from the top padding by unread rows only: then it is the
        # symmetric problem (pb = -1 here, pb = 2 below, both read as the top's)
        ("ic32_iw33ih19_oc8ow14oh17_pw0ph1_kw6kh4_sw2sh1", (1, 0, 0, 0), (19, 33, 17, 14)),
        ("mb1ic3ih224oc64oh112kh7sh2ph3", (3, 3, 3, 3), (224, 224, 112, 112)),
    ],
)
def test_benchdnn_given_output_fixes_the_padding_after(text, pads, shape):
    spec = ConvSpec.parse(text)
    assert spec.pads == pads and (spec.h, spec.w, spec.oh, spec.ow) == shape


def test_benchdnn_padding_after_follows_the_formula_on_many_shapes():
    """pb = (oh-1)*sh - ih + (kh-1)*(dh+1) + 1 - ph over a grid of descriptors benchdnn
    accepts; each parses to exactly the oh it gives."""
    import itertools

    for ih, kh, sh, dh, ph, extra in itertools.product(
            (5, 8, 13), (1, 3, 4), (1, 2, 3), (0, 1), (0, 1, 2), (-1, 0, 1, 2)):
        span = (kh - 1) * (dh + 1) + 1
        if ih + 2 * ph < span:
            continue
        oh = (ih + 2 * ph - span) // sh + 1 + extra
        pb = (oh - 1) * sh - ih + span - ph
        if oh < 1 or pb + sh <= 0:
            continue
        spec = ConvSpec.parse(f"mb1ic2ih{ih}oc2oh{oh}kh{kh}sh{sh}dh{dh}ph{ph}")
        assert (spec.oh, spec.ow) == (oh, oh)
        if 0 <= ph - pb < sh:  # rows no window reads: the symmetric problem
            assert spec.pads[:2] == (ph, ph) and spec.h == ih
        else:
            assert spec.pads[:2] == (ph, max(pb, 0)) and spec.h == ih + min(pb, 0)


def test_benchdnn_one_dimensional_descriptors_have_height_one():
    spec = ConvSpec.parse("ic19oc32_iw13ow12kw3pw1")
    assert (spec.h, spec.r, spec.oh, spec.sh) == (1, 1, 1, 1)
    assert (spec.w, spec.s, spec.ow) == (13, 3, 12) and spec.pads == (0, 0, 1, 0)
    assert ConvSpec.parse("mb1ic4iw20oc4kw5sw2").output_shape == (1, 4, 1, 8)


def test_benchdnn_repeat_count_in_the_name():
    spec = ConvSpec.parse('mb1ic64ih56oc64oh56kh3ph1n"resnet_50:res2a_branch2b*3"')
    assert (spec.name, spec.count) == ("resnet_50:res2a_branch2b", 3)
    assert ConvSpec.parse("mb1ic4ih8oc4kh3nplain*2").count == 2
    assert ConvSpec.parse('mb1ic4ih8oc4kh3n"no*repeat"').name == "no*repeat"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mb1ic4ih8oc4oh3kh3", "ph=-1"),              # oh too small: negative top padding
        ("mb1ic4ih8oc4oh2kh3ph0sh2", "down to -1"),    # bottom padding -4 with stride 2
        ("mb1ic4ih2oc4kh5", "oh=-2"),                # the filter outgrows the input
        ("mb1ic4ih8iw8oc4kh3", "kw"),                # a width axis needs its filter
        ("mb1ic64oc64kh3", "ih"),
        ("mb1ic64ih56oc64kh3xx", "cannot read"),
        ("mb1ic64id5ih56oc64kh3", "id=5"),
        ("", "empty"),
    ],
)
def test_benchdnn_errors_are_clear(text, needle):
    with pytest.raises(ValueError, match=needle):
        ConvSpec.parse(text)


def test_direction_names_the_problem_and_its_shapes():
    fwd = ConvSpec(n=2, c=3, h=7, k=4, r=3, stride=2, padding=1)
    d, w = fwd.with_(direction="bwd_d"), fwd.with_(direction="bwd_w", dtype="float64")
    assert (d.id, w.id) == (fwd.id + "-bwd_d", fwd.id + "f64-bwd_w")
    assert ConvSpec.parse(d.id) == d and ConvSpec.parse(w.id) == w and d != fwd
    assert (fwd.prepared_shape, fwd.argument_shape, fwd.result_shape) == (
        (4, 3, 3, 3), (2, 3, 7, 7), (2, 4, 4, 4))
    assert (d.prepared_shape, d.argument_shape, d.result_shape) == (
        (4, 3, 3, 3), (2, 4, 4, 4), (2, 3, 7, 7))
    assert (w.prepared_shape, w.argument_shape, w.result_shape) == (
        (2, 3, 7, 7), (2, 4, 4, 4), (4, 3, 3, 3))
    assert d.flops == fwd.flops and d.min_bytes == fwd.min_bytes and d.forward == fwd
    with pytest.raises(ValueError, match=r"direction must be one of fwd, bwd_d, bwd_w, got 'bwd'"):
        fwd.with_(direction="bwd")
