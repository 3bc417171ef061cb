"""The problem descriptor: one convolution layer, validated, with every derived quantity.

`ConvSpec` is the single source of truth for a problem.  Its field names are the
short names used everywhere else (DataFrame columns, TOML keys, CLI flags):
``n, c, h, w`` (input), ``k`` (output channels), ``r, s`` (filter height and
width), ``stride``, ``padding``, ``dilation``, ``groups``, ``dtype``, ``direction``.

A problem is always described by its forward convolution; ``direction`` says which of the
three convolutions of that layer is computed: ``fwd`` (y from x and w), ``bwd_d`` (the gradient
of the input, dx from dy and w: also the transposed convolution that inverts the forward one)
or ``bwd_w`` (the gradient of the weights, dw from x and dy).

Derived quantities (output size, explicit padding, FLOPs, parameters, bytes,
id) are properties computed here and nowhere else.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np

DTYPES = ("float32", "float64")
DIRECTIONS = ("fwd", "bwd_d", "bwd_w")
PADDING_MODES = ("valid", "same")
_DTYPE_CODES = {"float32": "f32", "float64": "f64"}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {v}")
    return v


def _nonneg_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}") from None
    if v < 0:
        raise ValueError(f"{name} must be a non-negative integer (>= 0), got {v}")
    return v


def _pair(name: str, value) -> int | tuple[int, int]:
    """An int or a pair of positive ints, canonical: a pair of equal ints becomes an int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        a, b = (_positive_int(name, v) for v in value)
        return a if a == b else (a, b)
    return _positive_int(name, value)


def _padding(value) -> str | int | tuple[int, ...]:
    """Canonical padding: 'valid', 'same', an int, (ph, pw) or (top, bottom, left, right)."""
    allowed = "'valid', 'same', an int >= 0, (ph, pw) or (top, bottom, left, right)"
    if isinstance(value, str):
        mode = value.lower()
        if mode not in PADDING_MODES:
            raise ValueError(f"padding must be {allowed}, got {value!r}")
        return mode
    if isinstance(value, (tuple, list)):
        if len(value) not in (2, 4):
            raise ValueError(f"padding must be {allowed}, got {value!r}")
        vals = tuple(_nonneg_int("padding", v) for v in value)
        if len(vals) == 4 and vals[0] == vals[1] and vals[2] == vals[3]:
            vals = (vals[0], vals[2])
        if len(vals) == 2 and vals[0] == vals[1]:
            return vals[0]
        return vals
    try:
        return _nonneg_int("padding", value)
    except ValueError:
        raise ValueError(f"padding must be {allowed}, got {value!r}") from None


_DTYPE_NAMES = {np.dtype(d): d for d in DTYPES}


def _dtype(value) -> str:
    if isinstance(value, str) and value in DTYPES:
        return value  # the common case, without NumPy's dtype.name (1.5 us a call)
    try:
        name = _DTYPE_NAMES.get(np.dtype(value)) or np.dtype(value).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    return name


def _hw(value) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def same_padding(size: int, filt: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow/PyTorch 'same' padding along one axis: (before, after), odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (filt - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def out_size(size: int, pad: int, filt: int, stride: int, dilation: int) -> int:
    """Output length along one axis: floor((size + pad - d*(filt-1) - 1) / stride) + 1."""
    return (size + pad - dilation * (filt - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution problem: NCHW input, OIHW weights, cross-correlation.

    Parameters
    ----------
    n, c, h, w : int
        Batch, input channels, input height and width (``w`` defaults to ``h``).
    k : int
        Output channels.
    r, s : int
        Filter height and width (``s`` defaults to ``r``).
    stride, dilation : int or (int, int)
    padding : 'valid', 'same', int, (ph, pw) or (top, bottom, left, right)
        'same' follows TensorFlow/PyTorch: the odd pixel goes bottom/right.
    groups : int
        Must divide ``c`` and ``k``.
    dtype : 'float32' or 'float64'
    direction : 'fwd', 'bwd_d' or 'bwd_w'
        Which of the layer's three convolutions (see the module's docstring).
    name : str
        Optional label (a network layer name); not part of the problem's identity.
    count : int
        How many times the layer occurs in its network; not part of the identity.

    Raises
    ------
    ValueError
        Naming the field and the allowed values, when the problem is invalid.
    """

    n: int = 1
    c: int = 1
    h: int = 1
    w: int | None = None
    k: int = 1
    r: int = 1
    s: int | None = None
    stride: int | tuple[int, int] = 1
    padding: str | int | tuple[int, ...] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    dtype: str = "float32"
    direction: str = "fwd"
    name: str = field(default="", compare=False)
    count: int = field(default=1, compare=False)

    def __post_init__(self):
        put = object.__setattr__
        for f in ("n", "c", "h", "k", "r", "groups", "count"):
            put(self, f, _positive_int(f, getattr(self, f)))
        put(self, "w", self.h if self.w is None else _positive_int("w", self.w))
        put(self, "s", self.r if self.s is None else _positive_int("s", self.s))
        put(self, "stride", _pair("stride", self.stride))
        put(self, "dilation", _pair("dilation", self.dilation))
        put(self, "padding", _padding(self.padding))
        put(self, "dtype", _dtype(self.dtype))
        put(self, "name", str(self.name))
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, "
                             f"got {self.direction!r}")
        if self.c % self.groups or self.k % self.groups:
            raise ValueError(
                f"groups must divide c={self.c} and k={self.k}, got groups={self.groups}"
            )
        pt, pb, pl, pr = self.pads
        for axis, size, filt, d in (("r", self.h + pt + pb, self.r, self.dh),
                                    ("s", self.w + pl + pr, self.s, self.dw)):
            span = d * (filt - 1) + 1
            if span > size:
                raise ValueError(
                    f"{axis}={filt} with dilation {d} spans {span} pixels, more than the "
                    f"padded input ({size}); allowed: a dilated filter no larger than the "
                    "padded input"
                )

    # ------------------------------------------------------------------ geometry
    # The geometry is cached on first use (a frozen dataclass keeps the values in its
    # __dict__): conv2d builds a spec per call, and recomputing pads, oh and ow at every
    # use cost ~5 us of a 60 us depthwise layer.
    @cached_property
    def sh(self) -> int:
        return _hw(self.stride)[0]

    @cached_property
    def sw(self) -> int:
        return _hw(self.stride)[1]

    @cached_property
    def dh(self) -> int:
        return _hw(self.dilation)[0]

    @cached_property
    def dw(self) -> int:
        return _hw(self.dilation)[1]

    @cached_property
    def pads(self) -> tuple[int, int, int, int]:
        """Explicit padding (top, bottom, left, right)."""
        p = self.padding
        if p == "valid":
            return (0, 0, 0, 0)
        if p == "same":
            return (*same_padding(self.h, self.r, self.sh, self.dh),
                    *same_padding(self.w, self.s, self.sw, self.dw))
        if isinstance(p, int):
            return (p, p, p, p)
        if len(p) == 2:
            return (p[0], p[0], p[1], p[1])
        return tuple(p)

    @cached_property
    def oh(self) -> int:
        pt, pb, _, _ = self.pads
        return out_size(self.h, pt + pb, self.r, self.sh, self.dh)

    @cached_property
    def ow(self) -> int:
        _, _, pl, pr = self.pads
        return out_size(self.w, pl + pr, self.s, self.sw, self.dw)

    @property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    @property
    def kg(self) -> int:
        """Output channels per group."""
        return self.k // self.groups

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.cg, self.r, self.s)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.oh, self.ow)

    @property
    def prepared_shape(self) -> tuple[int, int, int, int]:
        """The operand a kernel prepares once (``prepare(b, spec)``): the weights, or for
        ``bwd_w`` the input x."""
        return self.input_shape if self.direction == "bwd_w" else self.weight_shape

    @property
    def argument_shape(self) -> tuple[int, int, int, int]:
        """The operand of each call (``compute(a, out)``): x, or for both gradients dy."""
        return self.input_shape if self.direction == "fwd" else self.output_shape

    @property
    def result_shape(self) -> tuple[int, int, int, int]:
        """What a call writes: y (``fwd``), dx (``bwd_d``) or dw (``bwd_w``)."""
        if self.direction == "fwd":
            return self.output_shape
        return self.input_shape if self.direction == "bwd_d" else self.weight_shape

    @property
    def forward(self) -> ConvSpec:
        """The forward convolution of the same layer."""
        return self if self.direction == "fwd" else self.with_(direction="fwd")

    # ------------------------------------------------------------------ costs
    # Each direction multiplies the same pairs (every tap of every output against its input)
    # and touches the same three tensors once: one count serves all three.
    @property
    def flops(self) -> int:
        """Direct-method floating-point operations: 2·n·k·oh·ow·(c/groups)·r·s (any
        direction)."""
        return 2 * self.n * self.k * self.oh * self.ow * self.cg * self.r * self.s

    @property
    def params(self) -> int:
        """Weights (without bias): k·(c/groups)·r·s."""
        return self.k * self.cg * self.r * self.s

    @cached_property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def min_bytes(self) -> int:
        """Bytes moved at minimum: read the two operands once, write the result once (the
        same three tensors in every direction)."""
        elems = (self.n * self.c * self.h * self.w + self.params
                 + self.n * self.k * self.oh * self.ow)
        return elems * self.itemsize

    # ------------------------------------------------------------------ names
    @property
    def id(self) -> str:
        """Short canonical id, e.g. ``n1c64h56w56k64r3s3u1p1d1g1``, with ``f64`` for float64
        and ``-bwd_d`` or ``-bwd_w`` for a backward direction; round-trips through `parse`."""

        def enc(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

        s = (f"n{self.n}c{self.c}h{self.h}w{self.w}k{self.k}r{self.r}s{self.s}"
             f"u{enc(self.stride)}p{enc(self.padding)}d{enc(self.dilation)}g{self.groups}")
        s = s if self.dtype == "float32" else s + _DTYPE_CODES[self.dtype]
        return s if self.direction == "fwd" else f"{s}-{self.direction}"

    def with_(self, **changes) -> ConvSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """Read a ConvSpec id or a oneDNN benchdnn convolution descriptor (read as benchdnn
        reads it: `convbench.benchdnn`, which says how its padding, 1-D and repeat forms
        map to a ConvSpec)."""
        text = text.strip()
        if not text:
            raise ValueError("problem: empty descriptor")
        if _ID_RE.fullmatch(text):
            return _parse_id(text)
        from . import benchdnn  # it builds ConvSpecs: imported here, not at the top

        return benchdnn.parse(text)


_ID_RE = re.compile(
    r"n(\d+)c(\d+)h(\d+)w(\d+)k(\d+)r(\d+)s(\d+)u([\dx]+)p(same|valid|[\dx]+)d([\dx]+)g(\d+)(f32|f64)?"
    r"(?:-(bwd_d|bwd_w))?"
)


def _parse_id(text: str) -> ConvSpec:
    n, c, h, w, k, r, s, u, p, d, g, dt, direction = _ID_RE.fullmatch(text).groups()

    def dec(v):
        parts = tuple(int(x) for x in v.split("x"))
        return parts[0] if len(parts) == 1 else parts

    return ConvSpec(n=int(n), c=int(c), h=int(h), w=int(w), k=int(k), r=int(r), s=int(s),
                    stride=dec(u), padding=p if p in PADDING_MODES else dec(p),
                    dilation=dec(d), groups=int(g),
                    dtype={"f64": "float64"}.get(dt, "float32"), direction=direction or "fwd")
