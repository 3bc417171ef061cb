"""The compile target and the shapes derived from it, for CPUs named rather than measured."""

import pytest

from convbench_kernels.cpu import depthwise, direct, target

AVX2 = "+avx,+avx2,+fma,+sse4.2"
AVX512 = AVX2 + ",+avx512f,+avx512bw,+avx512dq,+avx512vl"


@pytest.mark.parametrize(("name", "features", "arch", "bits", "regs", "isa", "tile"), [
    ("haswell", AVX2, "x86_64", 256, 16, "avx2", {"kb": 4, "nv": 3}),
    ("znver3", AVX2, "x86_64", 256, 16, "avx2", {"kb": 4, "nv": 3}),
    ("skylake-avx512", AVX512, "x86_64", 256, 32, "avx512", {"kb": 8, "nv": 3}),
    ("skylake-avx512", AVX512 + ",-prefer-256-bit", "x86_64", 512, 32, "avx512",
     {"kb": 8, "nv": 3}),
    ("znver4", AVX512, "x86_64", 512, 32, "avx512", {"kb": 8, "nv": 3}),
    ("neoverse-v1", "+neon,+fp-armv8", "aarch64", 128, 32, "neon", {"kb": 8, "nv": 3}),
    ("neoverse-v2", "+neon,+sve,+sve2", "aarch64", 128, 32, "sve", {"kb": 8, "nv": 3}),
    ("x86-64", "+sse2", "x86_64", 128, 16, "sse", {"kb": 4, "nv": 3}),
])
def test_derive_from_a_cpu_name_and_features(name, features, arch, bits, regs, isa, tile):
    t = target.derive(name, features, arch)
    assert (t.vector_bits, t.vector_registers, t.isa) == (bits, regs, isa)
    assert t.lanes(4) == bits // 32 and t.lanes(8) == bits // 64
    d = direct.defaults(t)
    assert {"kb": d["kb"], "nv": d["nv"]} == tile
    # channel chunks of a quarter of L1 (32 KiB when the OS does not say) with 16 registers
    assert d["chunk_bytes"] == (8192 if regs == 16 else 0)
    # the channel-lane kernel where broadcasts need no register of their own
    assert d["oc_min"] == (direct.OC_MIN_PIXELS if regs == 32 else 0)
    assert d["oc_input_bytes"] == (t.l2_bytes or 1 << 20) // 2
    # depthwise's 3x3 strips: four vectors a row where 3 x 4 accumulators, four inputs and
    # nine weights fit (32 registers), else one
    assert depthwise.defaults(t)["strip_vecs"] == (4 if regs == 32 else 1)


def test_every_tile_of_the_space_fits_the_register_file():
    for t in (target.derive("haswell", AVX2), target.derive("znver4", AVX512)):
        space = direct.space(t)
        d = direct.defaults(t)
        tiles = [p for p in space if "kb" in p]
        assert {"kb": d["kb"], "nv": d["nv"]} in tiles and len(tiles) <= 8
        for p in tiles:
            assert p["kb"] * p["nv"] + p["nv"] + 1 <= t.vector_registers
        # the other chunk sizes, each alone (with the default tile)
        chunks = [p["chunk_bytes"] for p in space if "chunk_bytes" in p]
        assert len(chunks) == 2 and d["chunk_bytes"] not in chunks
        assert set(chunks) | {d["chunk_bytes"]} == {0, 8192, 16384}
        # and the channel-lane kernel the other way than the default
        assert [p for p in space if "oc_min" in p] == [
            {"oc_min": direct.OC_MIN_PIXELS - d["oc_min"]}]
        assert len(space) == len(tiles) + 3


def test_avx2_features_turn_off_everything_newer():
    host = "+64bit,+avx,+avx2,+avx512f,+avx512vl,+amx-tile,-sse4a,+fma,+sse4.2"
    got = target.avx2_features(host)
    assert target.parse_features(got) == {"64bit", "avx", "avx2", "fma", "sse4.2"}
    assert "-avx512f" in got and "-amx-tile" in got


def test_resolve_merges_defaults_installed_and_given(monkeypatch):
    monkeypatch.setattr(target, "_INSTALLED", {})
    defaults = {"kb": 8, "nv": 3}
    assert target.resolve("direct", defaults) == defaults
    target.install("direct", {"nv": 2})
    assert target.resolve("direct", defaults) == {"kb": 8, "nv": 2}
    assert target.resolve("direct", defaults, {"kb": 4}) == {"kb": 4, "nv": 2}
    target.install("direct", None)
    assert target.resolve("direct", defaults) == defaults
    with pytest.raises(ValueError, match="unknown parameter 'tile'"):
        target.resolve("direct", defaults, {"tile": 3})


def test_token_length_is_its_value():
    assert target.token(5) == (0,) * 5 and target.token(5) is target.token(5)


def test_cache_sizes_from_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                             (2, "Unified", "2048K"), (3, "Unified", "32M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert target.cache_sizes(tmp_path) == (48 << 10, 2 << 20, 32 << 20)
    assert target.cache_sizes(tmp_path / "missing") == (None, None, None)


def test_the_running_target_is_measured_and_consistent():
    t = target.current()
    assert t.vector_bits in (128, 256, 512) and t.vector_registers in (16, 32)
    assert t.to_dict()["isa"] == t.isa and t.describe().startswith(t.cpu_name)
