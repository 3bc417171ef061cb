"""oneDNN benchdnn's convolution descriptors and batch files, read as benchdnn reads them.

A descriptor is ``[gX][mbX][icX][ihX][iwX][ocX][ohX][owX][khX][kwX][shX][swX][phX][pwX]
[dhX][dwX][n"name"]`` (``_`` ignored; the depth fields ``id od kd sd pd dd`` only with their
2-D values).  benchdnn's rules, per spatial axis (h and w alike):

- Defaults: ``mb`` 2, ``g`` 1, stride 1, dilation 0 (benchdnn counts the zeros inserted between
  taps: its ``dh1`` is our dilation 2).
- Which axes: with no ``h`` field at all the problem is 1-D (``ic19oc32_iw13ow12kw3pw1``): the
  height axis is 1 (``ih oh kh`` 1).  With no ``w`` field, the width copies every ``h`` field.
  An axis that is given needs its input size and filter size.
- Padding and output size: with no ``oh``, ``ph`` defaults to 0 and ``oh`` follows; with ``oh``
  and no ``ph``, ``ph = ((oh - 1)·sh - ih + (kh - 1)·(dh + 1) + 1) / 2``; in both cases the
  bottom padding is whatever makes ``oh`` exact: ``pb = (oh - 1)·sh - ih + (kh - 1)·(dh + 1)
  + 1 - ph``.  That is how benchdnn's files write asymmetric padding.  (Divisions truncate
  toward zero, as in C.)
- What oneDNN rejects, we reject: a negative top padding, a bottom padding at or below
  ``-sh``, an output size below 1.
- One problem, one id: a bottom padding that differs from the top one only by rows no window
  reads (``0 <= ph - pb < sh``) is stored as the symmetric padding, so that ResNet's
  ``ih224oh112kh7sh2ph3`` (pb 2) is the same problem as PyTorch's padding 3.  Otherwise a
  negative bottom padding (above ``-sh``) leaves the last input rows unread, and the problem
  is stored with those rows cropped (the same work, the same output), since a ConvSpec's
  padding is never negative.
- ``*N`` at the end of a name is the layer's repeat count in its network
  (``n"resnet_50:res2a_branch2b*3"``): the name without it, ``count`` N.

Batch files hold a descriptor a line, ``#`` comments, and option lines for the descriptors
after them, as benchdnn's batch files set them: ``--mb=N`` the batch (``--mb=0``: their own),
``--dir=`` the direction (``FWD_D``, ``FWD_B`` and ``FWD_I`` forward; ``BWD_D`` the gradient of
the input; ``BWD_W`` and ``BWD_WB`` the gradient of the weights, the bias's gradient not
measured), ``--deconv`` and ``--conv`` the driver, ``--reset`` all of them back.

A deconvolution descriptor describes the transposed convolution itself: ``ic ih`` its input,
``oc oh`` its output, the larger side (with no ``oh``: ``(ih - 1)·sh - 2·ph + (kh - 1)·(dh +
1) + 1``).  convbench writes it as the convolution it inverts (``oc oh`` in, ``ic ih`` out)
in the matching direction: a deconvolution's forward pass is that convolution's ``bwd_d``,
its ``BWD_D`` is the convolution's ``fwd``, its ``BWD_W`` the convolution's ``bwd_w``.
"""

from __future__ import annotations

import re

from .spec import ConvSpec

_KEYS = ("mb", "ic", "ih", "iw", "oc", "oh", "ow", "kh", "kw", "sh", "sw",
         "ph", "pw", "dh", "dw", "g", "id", "od", "kd", "sd", "pd", "dd")
_TOKEN = re.compile(r"(" + "|".join(sorted(_KEYS, key=len, reverse=True)) + r")(\d+)"
                    r"|n\"([^\"]*)\"|n([^\"\s]*)$")
# The depth fields, accepted only with the value a 2-D problem has.
_FLAT_DEPTH = {"id": 1, "od": 1, "kd": 1, "sd": 1, "pd": 0, "dd": 0}
_AXIS_KEYS = ("i", "o", "k", "s", "p", "d")
_REPEAT = re.compile(r"(.*)\*(\d+)")


DIRECTIONS = {"FWD_D": "fwd", "FWD_B": "fwd", "FWD_I": "fwd", "BWD_D": "bwd_d",
              "BWD_W": "bwd_w", "BWD_WB": "bwd_w"}
# A deconvolution's pass -> the direction of the convolution it inverts.
_DECONV = {"fwd": "bwd_d", "bwd_d": "fwd", "bwd_w": "bwd_w"}


def parse(text: str, deconv: bool = False) -> ConvSpec:
    """A ConvSpec from one benchdnn convolution (or, with ``deconv``, deconvolution: see the
    module's docstring) descriptor; ValueError naming the field."""
    vals, name = _fields(text)
    if deconv:
        vals = _inverted(vals, text)
    for key, flat in _FLAT_DEPTH.items():
        if vals.get(key, flat) != flat:
            raise ValueError(f"problem: {key}={vals[key]} describes a 3-D convolution; "
                             f"allowed: {key}{flat} or absent (2-D only)")
    for need in ("ic", "oc"):
        if not vals.get(need):
            raise ValueError(f"problem: benchdnn descriptor {text!r} lacks {need} (>= 1)")
    h_axis, w_axis = _axes(vals, text)
    (h, pt, pb, r, sh, dh), (w, pl, pr, s, sw, dw) = (_axis(a, ax, text) for a, ax in
                                                      (("h", h_axis), ("w", w_axis)))
    name, count = _repeat(name)
    return ConvSpec(n=vals.get("mb", 2), c=vals["ic"], h=h, w=w, k=vals["oc"], r=r, s=s,
                    stride=(sh, sw), padding=(pt, pb, pl, pr), dilation=(dh, dw),
                    groups=vals.get("g", 1), name=name, count=count)


def _inverted(vals: dict, text: str) -> dict:
    """The fields of the convolution a deconvolution descriptor inverts: input and output
    swapped, each missing output size computed as benchdnn's deconvolution computes it."""
    out = dict(vals)
    for ax in "hw":
        i, o = vals.get("i" + ax), vals.get("o" + ax)
        if i and not o and vals.get("k" + ax):
            span = (vals["k" + ax] - 1) * (vals.get("d" + ax, 0) + 1) + 1
            o = (i - 1) * vals.get("s" + ax, 1) - 2 * vals.get("p" + ax, 0) + span
            if o < 1:
                raise ValueError(f"problem: {text!r} gives o{ax}={o}; allowed: >= 1")
        for key, value in (("i" + ax, o), ("o" + ax, i)):
            if value:
                out[key] = value
            else:
                out.pop(key, None)
    out["ic"], out["oc"] = vals.get("oc"), vals.get("ic")
    return {k: v for k, v in out.items() if v is not None}


def _fields(text: str) -> tuple[dict[str, int], str]:
    """The descriptor's ``{key: value}`` and its name (``_`` ignored outside the name)."""
    cut = text.find('n"')
    body = text.replace("_", "") if cut < 0 else text[:cut].replace("_", "") + text[cut:]
    vals: dict[str, int] = {}
    name = ""
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if not m:
            raise ValueError(f"problem: cannot read {text!r} at {body[pos:]!r}; expected a "
                             "ConvSpec id (n1c64h56w56k64r3s3u1p1d1g1) or a benchdnn descriptor "
                             "(mb1ic64ih56oc64oh56kh3ph1)")
        if m.group(1):
            vals[m.group(1)] = int(m.group(2))
        else:
            name = m.group(3) if m.group(3) is not None else m.group(4)
        pos = m.end()
    return vals, name


def _axes(vals: dict, text: str) -> tuple[dict, dict]:
    """The height and width axes' given fields (``i o k s p d``), benchdnn's way: a missing
    height makes a 1-D problem, a missing width copies the height."""
    given = {ax: {f: vals[f + ax] for f in _AXIS_KEYS if f + ax in vals} for ax in "hw"}

    def absent(ax):  # benchdnn: no size, filter, output or dilation; stride 1; no padding
        g = given[ax]
        return (not any(g.get(f) for f in "iokd") and g.get("s", 1) == 1
                and g.get("p", 0) < 1)

    if absent("h") and absent("w"):
        raise ValueError(f"problem: benchdnn descriptor {text!r} lacks ih (or iw for 1-D)")
    if absent("h"):
        return {"i": 1, "o": 1, "k": 1, "s": 1, "p": 0, "d": 0}, given["w"]
    return given["h"], (given["h"] if absent("w") else given["w"])


def _trunc_div(a: int, b: int) -> int:
    """C's integer division (toward zero), which benchdnn's formulas use."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _axis(ax: str, g: dict, text: str) -> tuple[int, int, int, int, int, int]:
    """``(size, pad_before, pad_after, filter, stride, dilation)`` of one axis, in ConvSpec's
    terms (dilation counted from 1, a negative pad after cropped from the input)."""
    for f in ("i", "k"):
        if not g.get(f):
            raise ValueError(f"problem: benchdnn descriptor {text!r} lacks {f}{ax} (>= 1)")
    size, filt, stride, dil = g["i"], g["k"], g.get("s", 1), g.get("d", 0)
    if stride < 1:
        raise ValueError(f"problem: s{ax}={stride} in {text!r}; allowed: >= 1")
    span = (filt - 1) * (dil + 1) + 1
    if g.get("o"):
        out = g["o"]
        pad = g["p"] if "p" in g else _trunc_div((out - 1) * stride - size + span, 2)
    else:
        pad = g.get("p", 0)
        out = _trunc_div(size - span + 2 * pad, stride) + 1
        if out < 1:
            raise ValueError(f"problem: {text!r} gives o{ax}={out}; allowed: >= 1")
    after = (out - 1) * stride - size + span - pad
    if pad < 0:
        raise ValueError(f"problem: {text!r} gives p{ax}={pad} (from o{ax}={out}); oneDNN "
                         "allows negative padding only after the input (bottom, right)")
    if after + stride <= 0:
        raise ValueError(f"problem: {text!r} gives a padding after the input of {after} "
                         f"(from o{ax}={out}); oneDNN allows it down to {1 - stride}")
    if 0 <= pad - after < stride:  # the rows between are never read: the symmetric problem
        after = pad
    elif after < 0:  # the last -after input rows are never read: the problem without them
        size, after = size + after, 0
    return size, pad, after, filt, stride, dil + 1


def _repeat(name: str) -> tuple[str, int]:
    """``("net:layer", 3)`` from ``"net:layer*3"``; ``(name, 1)`` without a repeat."""
    m = _REPEAT.fullmatch(name)
    if m and int(m.group(2)) >= 1:
        return m.group(1), int(m.group(2))
    return name, 1


def read_batch(text: str, source: str) -> list[ConvSpec]:
    """The problems of a batch file's ``text``, in order; errors start with ``source`` and
    name the line."""
    specs: list[ConvSpec] = []
    state = dict(_DEFAULT_STATE)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("--"):
            state = _option(line, state, f"{source}: line {number}")
            continue
        try:
            spec = parse(line, deconv=state["deconv"])
            direction = _DECONV[state["dir"]] if state["deconv"] else state["dir"]
            specs.append(spec.with_(direction=direction, **({"n": state["mb"]}
                                                            if state["mb"] else {})))
        except ValueError as e:
            raise ValueError(f"{source}: line {number}: {e}") from None
    return specs


_DEFAULT_STATE = {"mb": 0, "dir": "fwd", "deconv": False}


def _option(line: str, state: dict, where: str) -> dict:
    """``state`` after the option line ``line`` (``--mb=N``, ``--dir=X``, ``--conv``,
    ``--deconv``, ``--reset``)."""
    if m := re.fullmatch(r"--mb=(\d+)", line):
        return {**state, "mb": int(m.group(1))}
    if m := re.fullmatch(r"--dir=(\w+)", line):
        if m.group(1) not in DIRECTIONS:
            raise ValueError(f"{where}: --dir: unknown direction {m.group(1)!r} (allowed: "
                             f"{', '.join(DIRECTIONS)})")
        return {**state, "dir": DIRECTIONS[m.group(1)]}
    if line in ("--conv", "--deconv"):
        return {**state, "deconv": line == "--deconv"}
    if line == "--reset":
        return dict(_DEFAULT_STATE)
    raise ValueError(f"{where}: unsupported option {line!r} (allowed: --mb=N, --dir=D, "
                     "--conv, --deconv, --reset)")


def _strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line
