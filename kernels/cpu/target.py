"""The machine the CPU kernels are compiled for: vector width, vector registers, caches.

Kernels take their tunable shapes (register tiles, lane counts, block sizes) from a `Target`,
never from constants written for one CPU.  A target is what Numba compiles for: LLVM's CPU
name and feature set, which ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` override (with only
``NUMBA_CPU_NAME`` set, Numba keeps the host's features: to compile for an older ISA, set
both; `avx2_features` gives the feature string of an AVX2 machine).

- ``vector_bits``: the width of the vectors the compiled code uses.  An ISA's widest vectors
  are not always what LLVM emits: for most Intel CPUs with AVX-512 its tuning prefers 256-bit
  vectors (feature ``prefer-256-bit``), and loops are vectorized at 256 bits unless the
  feature string disables that preference.  `vector_bits` of the running process is measured,
  not guessed: `current` compiles a small loop and reads the registers in its machine code.
- ``vector_registers``: 32 with AVX-512 (even at 256 bits: AVX-512VL addresses ymm16-31) and
  on AArch64 (NEON, SVE), 16 with AVX2 or SSE.
- caches: L1 data and L2 of one core and L3 of one instance, from Linux's sysfs (None where
  the OS does not say).

`derive` computes a target from a CPU name and feature set alone (for tests and for reasoning
about other machines); `current` is the running process's.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

# Intel CPUs whose LLVM tuning prefers 256-bit vectors although they have AVX-512 (LLVM's
# TuningPrefer256Bit).  AMD's Zen 4 and 5 and Intel's Xeon Phi use 512-bit vectors.
PREFER_256 = frozenset({
    "skylake-avx512", "skx", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
    "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
    "graniterapids", "graniterapids-d", "diamondrapids", "alderlake", "raptorlake",
    "meteorlake", "arrowlake", "arrowlake-s", "lunarlake", "pantherlake", "clearwaterforest",
})
# The features of Intel's Haswell, the AVX2 baseline (`avx2_features`).
_HASWELL = ("64bit", "avx", "avx2", "bmi", "bmi2", "cmov", "cx16", "cx8", "f16c", "fma",
            "fsgsbase", "fxsr", "invpcid", "lzcnt", "mmx", "movbe", "pclmul", "popcnt",
            "rdrnd", "sahf", "sse", "sse2", "sse3", "sse4.1", "sse4.2", "ssse3", "x87",
            "xsave", "xsaveopt")


@dataclass(frozen=True)
class Target:
    """What the CPU kernels are compiled for (see the module docstring).

    Attributes
    ----------
    arch : str
        ``x86_64`` or ``aarch64`` (others are treated as 128-bit SIMD).
    cpu_name : str
        LLVM's CPU name.
    features : frozenset of str
        The enabled features (LLVM's names, without the ``+``).
    vector_bits : int
        Width of the vectors the compiled code uses: 128, 256 or 512.
    vector_registers : int
    l1d_bytes, l2_bytes, l3_bytes : int or None
    """

    arch: str
    cpu_name: str
    features: frozenset
    vector_bits: int
    vector_registers: int
    l1d_bytes: int | None = None
    l2_bytes: int | None = None
    l3_bytes: int | None = None

    def lanes(self, itemsize: int) -> int:
        """Elements of ``itemsize`` bytes in one vector."""
        return self.vector_bits // (8 * itemsize)

    @property
    def isa(self) -> str:
        """A short name of the widest vector ISA: ``avx512``, ``avx2``, ``sse``, ``neon``,
        ``sve``, or ``scalar``."""
        f = self.features
        if self.arch == "aarch64":
            return "sve" if "sve" in f else "neon"
        if "avx512f" in f:
            return "avx512"
        if "avx2" in f:
            return "avx2"
        return "sse" if "sse2" in f else "scalar"

    def describe(self) -> str:
        """One line: ``rocketlake, avx512 at 256-bit vectors, 32 registers``."""
        return (f"{self.cpu_name}, {self.isa} at {self.vector_bits}-bit vectors, "
                f"{self.vector_registers} vector registers")

    def to_dict(self) -> dict:
        return {"arch": self.arch, "cpu_name": self.cpu_name, "isa": self.isa,
                "vector_bits": self.vector_bits, "vector_registers": self.vector_registers,
                "l1d_bytes": self.l1d_bytes, "l2_bytes": self.l2_bytes,
                "l3_bytes": self.l3_bytes}


def parse_features(text: str) -> frozenset:
    """The enabled features of an LLVM feature string (``+avx2,-avx512f,...``)."""
    return frozenset(f[1:] for f in text.split(",") if f.startswith("+"))


def derive(cpu_name: str, features, arch: str = "x86_64",
           caches: tuple = (None, None, None)) -> Target:
    """The target of ``cpu_name`` with ``features`` (a set, or an LLVM feature string),
    reasoned from the ISA and LLVM's tuning, not measured.

    Examples: ``haswell`` (AVX2) gives 256-bit vectors and 16 registers; ``skylake-avx512``
    256-bit vectors and 32 registers (LLVM prefers 256 bits there); ``znver4`` 512 and 32; an
    AArch64 target 128 and 32.
    """
    text = features if isinstance(features, str) else ""
    f = parse_features(text) if text else frozenset(features)
    off = {t[1:] for t in text.split(",") if t.startswith("-")}
    if arch == "aarch64":
        bits, regs = 128, 32
    elif arch == "x86_64" and "avx512f" in f:
        prefer_256 = "prefer-256-bit" in f or (cpu_name in PREFER_256
                                               and "prefer-256-bit" not in off)
        bits, regs = (256 if prefer_256 else 512), 32
    elif arch == "x86_64" and "avx" in f:
        bits, regs = 256, 16
    else:
        bits, regs = 128, 16
    return Target(arch, cpu_name, f, bits, regs, *caches)


def avx2_features(host: str) -> str:
    """An LLVM feature string for an AVX2 (Haswell) machine, from the host's: every host
    feature outside Haswell's set turned off, so that nothing newer is emitted."""
    names = [f[1:] for f in host.split(",") if f[:1] in "+-"]
    return ",".join(("+" if n in _HASWELL else "-") + n for n in names)


def _size(text: str) -> int:
    """``"1024K"``, ``"32M"``, ``"49152"`` (sysfs cache sizes) in bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def cache_sizes(root: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> tuple:
    """Bytes of the L1 data cache and the L2 of one core and of the L3 of one instance that
    CPU 0 uses, from Linux's sysfs; None for a level the OS does not describe."""
    found: dict[int, int] = {}
    for index in sorted(Path(root).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data"):
            found[level] = size
    return found.get(1), found.get(2), found.get(3)


def widest_vectors() -> bool:
    """Have Numba compile for the ISA's widest vectors, if it still can; whether it does.

    LLVM's tuning for most Intel CPUs with AVX-512 prefers 256-bit vectors (`PREFER_256`),
    which halves the arithmetic rate of a register-tiled kernel on cores with two 512-bit FMA
    units, while BLAS libraries and oneDNN use the full width there.  Unless the user chose
    Numba's target (``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES``) or asked for Numba's
    default (``CONVBENCH_VECTOR_BITS=default``), the host's features are given to Numba
    without that preference.  That is possible only before Numba creates its code generator
    (at the first compilation); after it, the process keeps what it has, and `current` says
    which width that is.
    """
    if ((os.environ.get("CONVBENCH_VECTOR_BITS") or "widest") != "widest"
            or "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ):
        return False
    import llvmlite.binding as ll

    features = ll.get_host_cpu_features()
    if not (features.get("avx512f") and ll.get_host_cpu_name() in PREFER_256):
        return False
    import sys

    registry = sys.modules.get("numba.core.registry")
    if registry is not None and "_toplevel_target_context" in vars(registry.cpu_target):
        return False  # Numba has compiled already: its target is fixed for this process
    os.environ["NUMBA_CPU_FEATURES"] = features.flatten() + ",-prefer-256-bit"
    config = sys.modules.get("numba.core.config")
    if config is not None:  # imported already: its settings were read from the environment
        config.CPU_FEATURES = os.environ["NUMBA_CPU_FEATURES"]
    return True


def _compiled_for() -> tuple[str, str]:
    """LLVM's CPU name and feature string that Numba compiles for in this process."""
    import llvmlite.binding as ll
    from numba.core import config

    name = config.CPU_NAME or ll.get_host_cpu_name()
    features = config.CPU_FEATURES
    if features is None:
        features = ll.get_host_cpu_features().flatten()
    return name, features


def _probe_vector_bits() -> int | None:
    """The width of the packed arithmetic in the machine code Numba emits for a float32
    multiply-add loop (None if no packed arithmetic is found)."""
    import numpy as np
    from numba import njit

    @njit(cache=False, fastmath=True)
    def probe(a, b, s):
        for i in range(a.size):
            a[i] += s * b[i]

    a, b = np.zeros(256, np.float32), np.ones(256, np.float32)
    probe(a, b, np.float32(2.5))
    asm = probe.inspect_asm(probe.signatures[0])
    widths = {"zmm": 512, "ymm": 256, "xmm": 128}
    found = [widths[m] for m in re.findall(r"\bv(?:fmadd\w*|mul)ps\s+.*?%(zmm|ymm|xmm)", asm)]
    if re.search(r"\bfml[as]\s+v\d+\.4s", asm):  # AArch64 NEON
        found.append(128)
    return max(found) if found else None


@functools.cache
def current() -> Target:
    """The target of this process (measured once): Numba's CPU name and features, the vector
    width its code actually uses, and this machine's caches."""
    name, features = _compiled_for()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                       platform.machine().lower())
    reasoned = derive(name, features, arch, cache_sizes())
    if os.environ.get("CONVBENCH_NO_PROBE") == "1":
        return reasoned
    bits = _probe_vector_bits()
    if bits is None or bits == reasoned.vector_bits:
        return reasoned
    return Target(arch, name, reasoned.features, bits, reasoned.vector_registers,
                  reasoned.l1d_bytes, reasoned.l2_bytes, reasoned.l3_bytes)


# ---------------------------------------------------------------------------- parameters
# Tuned parameters a harness installed per family (`install`); a family's `prepare` uses them
# unless it is given its own, and its target-derived defaults where neither says.
_INSTALLED: dict[str, dict] = {}


def install(family: str, params: dict | None) -> None:
    """Use ``params`` (a mapping of a family's parameter names) for ``family`` from now on;
    None goes back to the defaults."""
    if params:
        _INSTALLED[family] = dict(params)
    else:
        _INSTALLED.pop(family, None)


def installed() -> dict[str, dict]:
    """What `install` put in place, per family (a copy; families on their defaults absent)."""
    return {family: dict(params) for family, params in _INSTALLED.items()}


def resolve(family: str, defaults: dict, given: dict | None = None) -> dict:
    """The parameters ``family`` runs with: its ``defaults``, then what was installed, then
    ``given``; a name the family does not know is an error (a stale cache, a typo)."""
    out = dict(defaults)
    for source in (_INSTALLED.get(family), given):
        if not source:
            continue
        unknown = set(source) - set(defaults)
        if unknown:
            raise ValueError(f"{family}: unknown parameter {sorted(unknown)[0]!r} (allowed: "
                             f"{', '.join(sorted(defaults))})")
        out.update(source)
    return out


@functools.cache
def token(n: int) -> tuple:
    """A tuple of ``n`` zeros: its length is part of its Numba type, so a kernel given it
    sees ``n`` as a compile-time constant (a register tile's shape) and Numba's cache keys
    the compiled code by it, as it would not a global."""
    return (0,) * n
