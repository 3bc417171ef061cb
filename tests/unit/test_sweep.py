"""Sweeps: the TOML schema, presets, batch files, and the errors bad input gets."""

import json
import tomllib

import pytest

from convbench import published, registry
from convbench.spec import ConvSpec
from convbench.sweep import (
    DEVICES,
    SweepConfig,
    TimingConfig,
    from_dict,
    load_batch,
    load_config,
    preset,
    preset_names,
)

# Exact problem counts and layer-occurrence totals (sum of counts), derived in each preset's
# header comment.
PRESETS = {
    "default": (16, 16),     # 8 odd filters x 2 strides
    "filters": (8, 8),       # 8 odd filters
    "strides": (12, 12),     # 3 filters x 4 strides
    "smoke": (3, 3),
    "lenet5": (2, 2),
    "alexnet": (5, 5),
    "vgg16": (9, 13),        # 13 convs; conv3_2 x2, conv4_2 x2, conv5_1 x3
    "resnet50": (23, 53),    # 1 + 4 + 6 + 6 + 6 distinct; 1 + 10 + 13 + 19 + 10 convs
    "googlenet": (6, 6),
    "mobilenet": (28, 40),   # stem + 9 distinct blocks x (dw, pw, std); 1 + 13 x 3
    "grid": (134, 134),
    "unet": (23, 23),        # 2 x 5 down, 4 x (up-conv + 2), the final 1x1
    "dcgan": (5, 5),      # 3 x 2 channels x 3 sizes x 3 filters x 2 strides + 18 dw + 8 stems
    "nnpack-table": (15, 16),  # NNPACK's table: 4 AlexNet, 7 VGG-A (conv5 x2), 4 OverFeat
}

GRID = {"c": [8], "h": [16], "k": [8], "filter": [1, 3]}


def sweep(**top):
    """A minimal valid sweep dict, with top-level keys replaced."""
    data = {"name": "t", "grid": dict(GRID)}
    data.update(top)
    return data


def same(a: SweepConfig, b: SweepConfig) -> bool:
    """Equal, and equal in what equality ignores (problem names and counts)."""
    return a == b and [(p.name, p.count) for p in a.problems] == [
        (p.name, p.count) for p in b.problems]


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_json(name):
    cfg = preset(name)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert same(from_dict(data), cfg)


def test_round_trip_keeps_every_field():
    cfg = from_dict({
        "name": "odd-one.v2",
        "algorithms": ["direct"],
        "devices": ["cpu", "cuda"],
        "timing": {"min_time": 0.001, "values": 7, "max_seconds": 2, "warmups": 0},
        "layers": [
            {"name": "a", "count": 3, "n": 2, "c": 6, "h": 9, "w": 7, "k": 4, "r": 3, "s": 2,
             "stride": [2, 1], "padding": [1, 0, 2, 1], "dilation": [1, 2], "groups": 2,
             "dtype": "float64"},
            {"c": 4, "h": 8, "k": 4, "r": 5, "padding": "valid"},
        ],
    }, source="x.toml")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["problems"][0] == {"id": cfg.problems[0].id, "name": "a", "count": 3}
    back = from_dict(data)
    assert same(back, cfg)
    assert back.source == "x.toml" and back.timing == TimingConfig(0.001, 7, 2.0, 0)
    assert back.algorithms == ("direct",) and back.devices == ("cpu", "cuda")
    assert from_dict(data, source="other").source == "other"


def test_to_dict_algorithms_none_means_all():
    data = from_dict(sweep()).to_dict()
    assert data["algorithms"] is None
    assert from_dict(data).algorithms is None


# ---------------------------------------------------------------------------- grid


def test_grid_product_count_and_order():
    cfg = from_dict(sweep(grid={"n": [1, 2], "c": [4], "h": [8, 16], "k": [4],
                                "filter": [1, 3, 5], "stride": [1, 2]}))
    assert len(cfg.problems) == 2 * 2 * 3 * 2
    # ConvSpec field order, the last axis fastest
    got = [(p.n, p.h, p.r, p.stride) for p in cfg.problems]
    assert got[:4] == [(1, 8, 1, 1), (1, 8, 1, 2), (1, 8, 3, 1), (1, 8, 3, 2)]
    assert got[6] == (1, 16, 1, 1) and got[12] == (2, 8, 1, 1) and got[-1] == (2, 16, 5, 2)


def test_grid_defaults():
    (p,) = from_dict(sweep(grid={"c": [4], "h": [8], "k": [6], "filter": [3]})).problems
    assert p == ConvSpec(n=1, c=4, h=8, w=8, k=6, r=3, s=3, stride=1, padding=0, dilation=1,
                         groups=1, dtype="float32")
    assert p.name == "" and p.count == 1


def test_grid_w_defaults_to_each_h():
    cfg = from_dict(sweep(grid={"c": [4], "h": [8, 12], "k": [4], "filter": [3]}))
    assert [(p.h, p.w) for p in cfg.problems] == [(8, 8), (12, 12)]
    cfg = from_dict(sweep(grid={"c": [4], "h": [8, 12], "w": [10], "k": [4], "filter": [3]}))
    assert [(p.h, p.w) for p in cfg.problems] == [(8, 10), (12, 10)]


def test_grid_filter_sets_r_and_s():
    cfg = from_dict(sweep(grid={"c": [4], "h": [16], "k": [4], "filter": [1, 5]}))
    assert [(p.r, p.s) for p in cfg.problems] == [(1, 1), (5, 5)]


def test_grid_r_and_s_are_a_product_and_s_defaults_to_r():
    cfg = from_dict(sweep(grid={"c": [4], "h": [16], "k": [4], "r": [1, 3], "s": [5, 7]}))
    assert [(p.r, p.s) for p in cfg.problems] == [(1, 5), (1, 7), (3, 5), (3, 7)]
    cfg = from_dict(sweep(grid={"c": [4], "h": [16], "k": [4], "r": [1, 3]}))
    assert [(p.r, p.s) for p in cfg.problems] == [(1, 1), (3, 3)]


def test_grid_padding_forms_and_pairs():
    cfg = from_dict(sweep(grid={"c": [4], "h": [16], "k": [4], "filter": [3],
                                "padding": ["same", "valid", 1, [1, 2], [0, 1, 0, 1]],
                                "stride": [[1, 2]]}))
    assert [p.padding for p in cfg.problems] == ["same", "valid", 1, (1, 2), (0, 1, 0, 1)]
    assert {p.stride for p in cfg.problems} == {(1, 2)}


def test_duplicates_dropped_only_when_identity_and_name_match():
    layer = {"c": 4, "h": 8, "k": 4, "r": 3}
    cfg = from_dict(sweep(grid={"c": [4], "h": [8], "k": [4], "filter": [3, 3]},
                          layers=[dict(layer), dict(layer, name="x"), dict(layer, name="x"),
                                  dict(layer, padding=1, name="x")]))
    assert [(p.name, p.padding) for p in cfg.problems] == [("", 0), ("x", 0), ("x", 1)]


def test_grid_then_layers_then_problems():
    cfg = from_dict(sweep(layers=[{"name": "L", "c": 2, "h": 4, "k": 2, "r": 1}],
                          problems=[{"id": "n1c3h5w5k3r1s1u1p0d1g1", "name": "P"}]))
    assert [p.name for p in cfg.problems] == ["", "", "L", "P"]


def test_problems_accept_benchdnn_descriptors():
    cfg = from_dict({"name": "t",
                     "problems": [{"id": 'mb1ic64ih56oc64oh56kh3ph1n"r:2b"', "count": 2}]})
    (p,) = cfg.problems
    assert p == ConvSpec(c=64, h=56, k=64, r=3, padding=1) and (p.name, p.count) == ("r:2b", 2)


def test_invalid_grid_combinations_are_an_error_with_a_count():
    with pytest.raises(ValueError) as e:
        from_dict(sweep(grid={"c": [4], "h": [4, 8], "k": [4], "filter": [3, 5, 7],
                              "padding": ["valid"]}), source="s.toml")
    msg = str(e.value)
    assert msg.startswith("s.toml: grid: 2 of 6 combinations are invalid")
    assert "r=5" in msg and "\n" not in msg
    # 'same' padding never makes a filter outgrow the padded input
    assert len(from_dict(sweep(grid={"c": [4], "h": [4], "k": [4], "filter": [15],
                                     "stride": [1, 2, 4], "padding": ["same"]})).problems) == 3


def test_algorithms_and_devices():
    names = [a.name for a in registry.algorithms()]
    cfg = from_dict(sweep(algorithms=[names[0], names[0]], devices=["cpu"]))
    assert cfg.algorithms == (names[0],)
    assert from_dict(sweep()).devices == ("cpu",)
    assert set(DEVICES) == set(registry.DEVICES)


def test_name_defaults_to_source_stem(tmp_path):
    f = tmp_path / "my sweep.toml"
    f.write_text('[grid]\nc = [4]\nh = [8]\nk = [4]\nfilter = [3]\n')
    cfg = load_config(f)
    assert cfg.name == "my_sweep" and cfg.source == str(f)


# ---------------------------------------------------------------------------- presets


def test_preset_names():
    assert preset_names() == sorted(PRESETS)


@pytest.mark.parametrize(("name", "counts"), sorted(PRESETS.items()))
def test_preset_loads_with_exact_counts(name, counts):
    cfg = preset(name)
    assert cfg.name == name and cfg.source == f"preset:{name}"
    assert (len(cfg.problems), sum(p.count for p in cfg.problems)) == counts
    assert cfg.devices == ("cpu",)
    assert len(set(cfg.problems)) == len(cfg.problems)  # distinct problems, merged by count


def test_default_preset_is_the_crossover_sweep():
    cfg = preset("default")
    assert cfg.algorithms is None
    assert cfg.timing == TimingConfig(min_time=0.02, values=10, max_seconds=3.0, warmups=1)
    assert [(p.r, p.stride) for p in cfg.problems[:3]] == [(1, 1), (1, 2), (3, 1)]
    assert {p.r for p in cfg.problems} == set(range(1, 16, 2))
    assert all(p.padding == "same" and (p.c, p.k, p.h, p.w, p.n) == (32, 32, 64, 64, 1)
               for p in cfg.problems)


def test_smoke_preset_is_tiny_and_fast():
    cfg = preset("smoke")
    assert cfg.timing == TimingConfig(min_time=0.0005, values=3, max_seconds=0.2, warmups=1)
    assert all(p.c == 4 and p.h == 8 for p in cfg.problems)
    assert {p.r for p in cfg.problems} == {1, 3} and {p.sh for p in cfg.problems} == {1, 2}


def test_network_presets_are_batch_1_float32_with_names():
    for name in ("lenet5", "alexnet", "vgg16", "resnet50", "googlenet", "mobilenet", "unet",
                 "dcgan"):
        for p in preset(name).problems:
            assert p.n == 1 and p.dtype == "float32" and p.name.startswith(name + ":")


def by_name(preset_name):
    return {p.name: p for p in preset(preset_name).problems}


def test_resnet50_spot_checks():
    layers = by_name("resnet50")
    conv1 = layers["resnet50:conv1"]
    assert conv1 == ConvSpec(c=3, h=224, k=64, r=7, stride=2, padding=3) and conv1.count == 1
    assert (conv1.oh, conv1.ow) == (112, 112)
    assert layers["resnet50:res2a_branch2c"].count == 4  # 3 expands + the stage-2 projection
    assert layers["resnet50:res4b_branch2b"].count == 5
    # the stride sits on the first 3x3 and the projection, both halving the size
    for stage, size in ((3, 56), (4, 28), (5, 14)):
        for branch in ("2b", "1"):
            p = layers[f"resnet50:res{stage}a_branch{branch}"]
            assert (p.h, p.stride, p.oh) == (size, 2, size // 2)


def test_resnet50_matches_the_design_table():
    # docs/sweeps.md, "Presets": (c, k, r, stride, h), distinct convolutions
    table = {(3, 64, 7, 2, 224), (64, 64, 1, 1, 56), (64, 64, 3, 1, 56), (64, 256, 1, 1, 56),
             (256, 64, 1, 1, 56), (256, 128, 1, 1, 56), (128, 128, 3, 2, 56),
             (128, 512, 1, 1, 28), (256, 512, 1, 2, 56), (512, 128, 1, 1, 28),
             (128, 128, 3, 1, 28), (512, 256, 1, 1, 28), (256, 256, 3, 2, 28),
             (256, 1024, 1, 1, 14), (512, 1024, 1, 2, 28), (1024, 256, 1, 1, 14),
             (256, 256, 3, 1, 14), (1024, 512, 1, 1, 14), (512, 512, 3, 2, 14),
             (512, 2048, 1, 1, 7), (1024, 2048, 1, 2, 14), (2048, 512, 1, 1, 7),
             (512, 512, 3, 1, 7)}
    got = {(p.c, p.k, p.r, p.stride, p.h) for p in preset("resnet50").problems}
    assert got == table


def test_mobilenet_spot_checks():
    problems = preset("mobilenet").problems
    dw = [p for p in problems if p.groups > 1]
    assert all(p.groups == p.c == p.k and p.r == 3 and p.padding == 1 for p in dw)
    assert sum(p.count for p in dw) == 13 and len(dw) == 9
    pw = [p for p in problems if ":conv_pw_" in p.name]
    std = [p for p in problems if ":conv_std_" in p.name]
    assert sum(p.count for p in pw) == sum(p.count for p in std) == 13
    layers = by_name("mobilenet")
    assert layers["mobilenet:conv_dw_7"].count == 5
    assert layers["mobilenet:conv_dw_7"] == ConvSpec(c=512, h=14, k=512, r=3, padding=1,
                                                     groups=512)
    assert layers["mobilenet:conv_std_12"] == ConvSpec(c=512, h=14, k=1024, r=3, stride=2,
                                                       padding=1)
    assert layers["mobilenet:conv_pw_12"] == ConvSpec(c=512, h=7, k=1024, r=1)
    assert layers["mobilenet:conv1"] == ConvSpec(c=3, h=224, k=32, r=3, stride=2, padding=1)
    # each block's pointwise layer reads its depthwise output; the standard conv matches both
    for i in (1, 2, 3, 4, 5, 6, 7, 12, 13):
        d, p, s = (layers[f"mobilenet:conv_{kind}_{i}"] for kind in ("dw", "pw", "std"))
        assert (p.c, p.h) == (d.k, d.oh) and s.output_shape == p.output_shape
        assert d.count == p.count == s.count


def test_alexnet_vgg_googlenet_spot_checks():
    alex = by_name("alexnet")
    assert alex["alexnet:conv1"].oh == 55
    assert [alex[f"alexnet:conv{i}"].groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    vgg = preset("vgg16").problems
    assert all(p.r == 3 and p.oh == p.h for p in vgg)
    assert by_name("vgg16")["vgg16:conv5_1"].count == 3
    g = by_name("googlenet")
    assert g["googlenet:inception_3a/5x5"] == ConvSpec(c=16, h=28, k=32, r=5, padding=2)
    # the four branches concatenate to inception (3a)'s 256 output channels
    assert sum(p.k for p in g.values() if "reduce" not in p.name) == 256


def test_nnpack_table_matches_convnet_benchmarks_at_batch_16():
    layers = by_name("nnpack-table")
    assert set(layers) == set(published.NNPACK)
    assert all(p.n == 16 and p.dtype == "float32" and p.direction == "fwd" and p.groups == 1
               for p in layers.values())
    # convnet-benchmarks' protobufs: (c, k, r, input size, output size)
    expected = {"alexnet-conv2": (64, 192, 5, 27, 27), "alexnet-conv5": (256, 256, 3, 13, 13),
                "vgg-a-conv1": (3, 64, 3, 224, 224), "vgg-a-conv2": (64, 128, 3, 112, 112),
                "vgg-a-conv5": (512, 512, 3, 14, 14), "overfeat-conv2": (96, 256, 5, 28, 24),
                "overfeat-conv5": (1024, 1024, 3, 12, 12)}
    for name, want in expected.items():
        p = layers[f"nnpack:{name}"]
        assert (p.c, p.k, p.r, p.h, p.oh) == want, name
    assert layers["nnpack:vgg-a-conv5"].count == 2  # conv5.1 and conv5.2
    # each layer reads what the one before it writes (AlexNet and OverFeat pool in between)
    for a, b in (("alexnet-conv3", "alexnet-conv4"), ("alexnet-conv4", "alexnet-conv5"),
                 ("vgg-a-conv3.1", "vgg-a-conv3.2"), ("overfeat-conv3", "overfeat-conv4")):
        pa, pb = layers[f"nnpack:{a}"], layers[f"nnpack:{b}"]
        assert (pa.k, pa.oh) == (pb.c, pb.h), (a, b)


def test_nnpack_published_winners_are_the_tables_fastest():
    # the bold entries of NNPACK's README table
    assert published.nnpack_winner("nnpack:vgg-a-conv1") == published.IM2COL
    assert published.nnpack_winner("nnpack:overfeat-conv3") == published.WINOGRAD
    assert published.nnpack_winner("nnpack:alexnet-conv2") == published.FFT16
    for _, ms in published.NNPACK.values():
        assert set(ms) == set(published.NNPACK_ALGORITHMS)
        assert ms[published.IM2COL] and ms[published.FFT8] and ms[published.FFT16]
    # Winograd F(6x6,3x3) is N/A exactly on the 5x5 layers
    fives = {n for n, p in by_name("nnpack-table").items() if p.r == 5}
    assert fives == {n for n, (_, ms) in published.NNPACK.items()
                     if ms[published.WINOGRAD] is None}


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown preset 'nope'.*resnet50"):
        preset("nope")


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (sweep(gird={}), "unknown key 'gird' (allowed: name, description, algorithms"),
        (sweep(timing={"mintime": 1}), "timing: unknown key 'mintime'"),
        (sweep(timing={"values": 2.5}), "timing.values: expected an integer >= 1"),
        (sweep(timing={"min_time": -1}), "timing.min_time: expected a positive number"),
        (sweep(timing={"warmups": -1}), "timing.warmups"),
        (sweep(timing=[1]), "timing: expected a table"),
        (sweep(grid=dict(GRID, filter="x")), "grid.filter: expected a non-empty list of "
                                             "positive integers, got 'x'"),
        (sweep(grid=dict(GRID, filter=[3, "x"])), "grid.filter: expected a list of positive "
                                                  "integers, got 'x'"),
        (sweep(grid=dict(GRID, c=[-4])), "grid.c: expected a list of positive integers, got -4"),
        (sweep(grid=dict(GRID, h=[8.0])), "grid.h"),
        (sweep(grid=dict(GRID, n=[True])), "grid.n"),
        (sweep(grid=dict(GRID, k=[])), "grid.k: expected a non-empty list"),
        (sweep(grid=dict(GRID, padding=["full"])), "grid.padding: expected a list of 'same', "
                                                   "'valid'"),
        (sweep(grid=dict(GRID, padding=[[1, 2, 3]])), "grid.padding"),
        (sweep(grid=dict(GRID, stride=[[1, 2, 3]])), "grid.stride"),
        (sweep(grid=dict(GRID, dtype=["float16"])), "grid.dtype: expected a list of "
                                                    "'float32', 'float64'"),
        (sweep(grid=dict(GRID, groups=[3])), "grid: 2 of 2 combinations are invalid"),
        (sweep(grid=dict(GRID, r=[3])), "grid: give filter (r = s) or r and s, not both"),
        (sweep(grid={"c": [4], "h": [8], "k": [4], "s": [3]}), "grid.s: needs r"),
        (sweep(grid={"c": [4], "h": [8], "filter": [3]}), "grid: missing key 'k'"),
        (sweep(grid={"c": [4], "h": [8], "k": [4]}), "grid: missing key 'filter'"),
        (sweep(grid=dict(GRID, fliter=[3])), "grid: unknown key 'fliter'"),
        (sweep(algorithms=["nope"]), "algorithms: unknown algorithm 'nope' (allowed: direct"),
        (sweep(algorithms="direct"), "algorithms: expected a non-empty list"),
        (sweep(algorithms=[]), "algorithms: expected a non-empty list"),
        (sweep(devices=["tpu"]), "devices: unknown device 'tpu' (allowed: cpu, cuda)"),
        (sweep(name=""), "name: expected a non-empty string"),
        (sweep(name=3), "name: expected"),
        (sweep(name="a/b"), "name: expected"),
        (sweep(layers=[{"name": "alexnet:conv2", "c": 96, "h": 27, "k": 256, "r": 5,
                        "groups": 3}]),
         "layers[0] (alexnet:conv2): groups must divide"),
        (sweep(layers=[{"c": 4, "h": 8, "k": 4, "r": 3}, {"name": "x", "c": 4, "h": 8,
                                                          "k": 4, "r": 3, "padding": "full"}]),
         "layers[1].padding (x): expected 'same', 'valid'"),
        (sweep(layers=[{"c": 4, "h": 8, "k": 4, "r": 3, "count": 0}]), "layers[0].count"),
        (sweep(layers=[{"c": 4, "h": 8, "k": 4, "r": 3, "stride": -1}]), "layers[0].stride"),
        (sweep(layers=[{"c": 4, "h": 8, "k": 4, "r": 3, "filter": 3}]),
         "layers[0]: unknown key 'filter' (allowed: name, count"),
        (sweep(layers=[{"name": "y", "c": 4, "h": 8, "r": 3}]),
         "layers[0] (y): missing key 'k'"),
        (sweep(layers=[{"c": 4, "h": 2, "k": 4, "r": 3, "padding": "valid"}]),
         "layers[0]: r=3 with dilation 1 spans 3 pixels"),
        (sweep(layers={"c": 4}), "layers: expected a non-empty array of tables"),
        (sweep(problems=[{"id": "bogus"}]), "problems[0].id: problem: cannot read"),
        (sweep(problems=[{"id": "n1c3h5w5k3r1s1u1p0d1g1", "count": -1}]), "problems[0].count"),
        ({"name": "t"}, "empty sweep"),
        ({"name": "t", "timing": {}}, "empty sweep"),
    ],
)
def test_bad_input_names_the_key(data, expected):
    with pytest.raises(ValueError) as e:
        from_dict(data, source="sweep.toml")
    msg = str(e.value)
    assert msg.startswith("sweep.toml: ") and expected in msg and "\n" not in msg


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(ValueError, match="did you mean 'grid'"):
        from_dict(sweep(gird={}))


def test_timing_config_validates_itself():
    with pytest.raises(ValueError, match="max_seconds"):
        TimingConfig(max_seconds=0)
    with pytest.raises(ValueError, match="values"):
        TimingConfig(values=True)
    assert TimingConfig(min_time=1).min_time == 1.0


def test_empty_sweepconfig_is_an_error():
    with pytest.raises(ValueError, match="empty sweep"):
        SweepConfig(name="x", problems=(), algorithms=None)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ValueError, match=f"{path}: no such file"):
        load_config(path)
    with pytest.raises(ValueError, match="absent.txt: no such file"):
        load_batch(tmp_path / "absent.txt")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\n[grid]\nc = [4,\nh = = 3\n')
    with pytest.raises(ValueError) as e:
        load_config(f)
    assert str(e.value).startswith(f"{f}: invalid TOML:") and "line 4" in str(e.value)


def test_load_config_errors_name_the_file(tmp_path):
    f = tmp_path / "sweep.toml"
    f.write_text('gird = 1\n')
    with pytest.raises(ValueError, match=r"sweep\.toml: unknown key 'gird'"):
        load_config(f)


def test_load_config_reads_the_design_example(tmp_path):
    f = tmp_path / "filters.toml"
    f.write_text("""
name = "filters"
algorithms = ["direct", "im2col"]
devices = ["cpu"]
[timing]
min_time = 0.02
values = 5
max_seconds = 5.0
[grid]
n = [1]
c = [32]
k = [32]
h = [64]
filter = [1, 3, 5, 7, 9, 11, 13]
stride = [1, 2]
padding = ["same"]
dilation = [1]
groups = [1]
dtype = ["float32"]
[[layers]]
name = "resnet50:res2a_branch2b"
n = 1
c = 64
h = 56
k = 64
r = 3
stride = 1
padding = 1
""")
    cfg = load_config(f)
    assert len(cfg.problems) == 7 * 2 + 1 and cfg.problems[-1].name == "resnet50:res2a_branch2b"
    assert cfg.algorithms == ("direct", "im2col") and cfg.timing == TimingConfig()


# ---------------------------------------------------------------------------- batch files


def test_batch_file_with_comments_names_and_options(tmp_path):
    f = tmp_path / "resnet_50.txt"
    f.write_text(
        "# ResNet-50, two layers\n"
        "\n"
        'mb1ic3ih224oc64oh112kh7sh2ph3n"resnet_50:conv1"\n'
        '   mb1_ic64ih56_oc64oh56_kh3ph1n"resnet_50:res2a # 3x3"  # trailing comment\n'
        'mb1ic3ih224oc64oh112kh7sh2ph3n"resnet_50:conv1"\n'  # duplicate: dropped
        "--mb=4\n"
        "ic64ih56oc256oh56kh1\n"
    )
    cfg = load_batch(f)
    assert cfg.name == "resnet_50" and cfg.source == f"batch:{f}"
    assert cfg.algorithms is None and cfg.devices == ("cpu",)
    assert [p.name for p in cfg.problems] == ["resnet_50:conv1", "resnet_50:res2a # 3x3", ""]
    assert cfg.problems[0] == ConvSpec(c=3, h=224, k=64, r=7, stride=2, padding=3)
    assert cfg.problems[1] == ConvSpec(c=64, h=56, k=64, r=3, padding=1)
    assert cfg.problems[2] == ConvSpec(n=4, c=64, h=56, k=256, r=1)
    assert same(from_dict(cfg.to_dict()), cfg)


def test_batch_file_of_real_forms_repeats_asymmetric_padding_and_1d(tmp_path):
    """The forms oneDNN's own shape files use: a repeat count, an oh that fixes the bottom
    padding, a 1-D layer; network totals count the repeats."""
    f = tmp_path / "net.txt"
    f.write_text('mb1ic64ih56oc64oh56kh3ph1n"net:a*3"\n'
                 'mb1ic16ih10oc16oh11kh3ph1n"net:b"\n'
                 'mb1ic8oc8_iw13ow12kw3pw1n"net:c*2"\n')
    cfg = load_batch(f)
    assert [(p.name, p.count) for p in cfg.problems] == [("net:a", 3), ("net:b", 1),
                                                         ("net:c", 2)]
    assert cfg.problems[1].pads == (1, 2, 1, 2) and cfg.problems[1].oh == 11
    assert cfg.problems[2].input_shape == (1, 8, 1, 13) and cfg.problems[2].ow == 12
    again = from_dict(cfg.to_dict())
    assert [(p, p.name, p.count) for p in again.problems] == [
        (p, p.name, p.count) for p in cfg.problems]


def test_batch_directions_and_deconvolutions_as_benchdnn_sets_them(tmp_path):
    f = tmp_path / "b.txt"
    f.write_text('--deconv\n--dir=FWD_B\nmb1ic1024ih28oc512oh56kh2sh2n"unet:up1"\n'
                 "ic64ih32oc3kh4sh2ph1\n--dir=BWD_D\nmb1ic8ih4oc4kh3\n"
                 "--conv\n--dir=BWD_WB\nmb1ic4ih8oc4kh3ph1\n--reset\nmb1ic4ih8oc4kh3ph1\n")
    p = load_batch(f).problems
    # the up-convolution is the unet preset's: the convolution it inverts, bwd_d
    assert p[0] == preset("unet").problems[10] and p[0].name == "unet:up1"
    # no oh: benchdnn's deconvolution size (32 - 1)*2 - 2 + 4 = 64, the default batch 2
    assert (p[1].direction, p[1].input_shape, p[1].output_shape) == (
        "bwd_d", (2, 3, 64, 64), (2, 64, 32, 32))
    # a deconvolution's BWD_D is the inverted convolution's forward pass: 4 -> 6 inverted
    assert (p[2].direction, p[2].c, p[2].h, p[2].k, p[2].oh) == ("fwd", 4, 6, 8, 4)
    assert [q.direction for q in p[3:]] == ["bwd_w", "fwd"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# ok\nmb1ic4ih8oc4kh3\n\nmb1ic4ih8oc4kh3_bogus9\n", "line 4: problem: cannot read"),
        ("mb1ic4ih8oc4kh3\nmb1ic4ih8oc4oh3kh3\n", "line 2: problem: 'mb1ic4ih8oc4oh3kh3' gives "
         "ph=-1"),
        ("mb1ic4ih8oc4kh3g3\n", "line 1: groups must divide"),
        ("--dir=BWD_X\nmb1ic4ih8oc4kh3\n", "line 1: --dir: unknown direction 'BWD_X' (allowed: "
         "FWD_D, FWD_B, FWD_I, BWD_D, BWD_W, BWD_WB)"),
        ("--alg=wino\nmb1ic4ih8oc4kh3\n", "line 1: unsupported option '--alg=wino'"),
        ("# nothing\n\n", "empty sweep"),
    ],
)
def test_bad_batch_lines_name_the_line(tmp_path, text, expected):
    f = tmp_path / "b.txt"
    f.write_text(text)
    with pytest.raises(ValueError) as e:
        load_batch(f)
    assert str(e.value).startswith(f"batch:{f}: ") and expected in str(e.value)


def test_preset_files_are_valid_toml_with_a_why_comment():
    from convbench.sweep import _preset_dir

    for name in preset_names():
        text = (_preset_dir() / f"{name}.toml").read_text()
        assert text.startswith("# ") and tomllib.loads(text)["name"] == name


# ---------------------------------------------------------------------------- directions


def test_grid_and_layers_take_directions():
    cfg = from_dict(sweep(grid={**GRID, "direction": ["fwd", "bwd_w"]},
                          layers=[{"name": "up", "c": 4, "h": 8, "k": 2, "r": 2, "stride": 2,
                                   "direction": "bwd_d"}]))
    assert [p.direction for p in cfg.problems] == ["fwd", "bwd_w", "fwd", "bwd_w", "bwd_d"]
    assert cfg.problems[-1].id.endswith("-bwd_d") and cfg.problems[-1].name == "up"
    assert same(from_dict(cfg.to_dict()), cfg)
    with pytest.raises(ValueError, match=r"grid.direction: expected a list of 'fwd', 'bwd_d', "
                                         r"'bwd_w', got 'up'"):
        from_dict(sweep(grid={**GRID, "direction": ["up"]}))


def test_with_directions_runs_each_layer_in_every_direction_named():
    cfg = preset("resnet50").with_directions(("bwd_w", "fwd"))
    base = preset("resnet50")
    assert len(cfg.problems) == 2 * len(base.problems)
    first, second = cfg.problems[:2]
    assert (first, second) == (base.problems[0], base.problems[0].with_(direction="bwd_w"))
    assert second.name == first.name and second.count == first.count
    assert cfg.with_directions(("bwd_d",)).problems[0].direction == "bwd_d"
    with pytest.raises(ValueError, match="directions: unknown direction 'sideways'"):
        cfg.with_directions(("sideways",))


def test_unet_and_dcgan_up_convolutions_are_transposed_convolutions():
    unet = by_name("unet")
    ups = [p for p in unet.values() if p.direction == "bwd_d"]
    # (input channels, input size) -> (output channels, output size) of each up-convolution
    assert [(p.k, p.oh, p.c, p.h) for p in ups] == [
        (1024, 28, 512, 56), (512, 52, 256, 104), (256, 100, 128, 200), (128, 196, 64, 392)]
    assert all((p.r, p.sh) == (2, 2) for p in ups)
    assert unet["unet:down1_conv1"].input_shape == (1, 1, 572, 572)
    assert unet["unet:final_1x1"].output_shape == (1, 2, 388, 388)
    assert sum(p.direction == "fwd" and p.r == 3 and not any(p.pads) for p in unet.values()) == 18
    dcgan = list(by_name("dcgan").values())
    assert [(p.k, p.oh, p.c, p.h) for p in dcgan] == [
        (100, 1, 512, 4), (512, 4, 256, 8), (256, 8, 128, 16), (128, 16, 64, 32), (64, 32, 3, 64)]
    assert all(p.direction == "bwd_d" and p.r == 4 for p in dcgan)
