"""Users' algorithms: `convbench.register`, entry points, and what a broken one becomes."""

import dataclasses
import warnings
from importlib import metadata

import numpy as np
import pytest

import convbench
from convbench import plugins, registry, runner, sweep
from convbench_kernels.reference import reference_conv2d
from tests import fakes


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts with no user algorithm and no plugin read, and leaves none behind."""
    monkeypatch.setattr(registry, "_USER", [])
    monkeypatch.setattr(plugins, "_state", {"loaded": True, "problems": [], "sources": {}})


def mine(name="mine", **changes):
    """A correct user algorithm (the reference itself), with fields changed as asked."""
    good = fakes.entries()[0]
    return dataclasses.replace(good, **{"name": name, "family": "user",
                                        "doc": "the user's own", **changes})


def test_a_registered_algorithm_is_listed_and_called_by_name():
    convbench.register(mine())
    assert [a.name for a in convbench.algorithms("cpu")][-1] == "mine"
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    got = convbench.conv2d(x, w, padding=1, algo="mine")
    np.testing.assert_allclose(got, reference_conv2d(x, w, pads=(1, 1, 1, 1)))
    assert registry.origin(registry.get("mine")) == "register()"
    assert registry.origin(registry.get("direct")) == "convbench"


def test_a_registered_algorithm_gets_rows_like_a_builtin(tmp_path):
    """Same reference check, tolerance and timing: one exact, one wrong, one that raises."""
    convbench.register(mine("exact"))
    convbench.register(mine("wrong", prepare=fakes.entries()[4].prepare))   # 1 % off
    convbench.register(mine("broken", prepare=lambda w, spec: 1 / 0))
    config = dataclasses.replace(sweep.preset("smoke"), algorithms=("exact", "wrong", "broken"))
    df = runner.run_sweep(config, results_dir=tmp_path, threads=1)
    by = {a: g for a, g in df.groupby("algorithm")}
    assert (by["exact"]["status"] == "ok").all() and by["exact"]["accurate"].all()
    assert (by["wrong"]["status"] == "ok").all() and not by["wrong"]["accurate"].any()
    assert (by["broken"]["status"] == "error").all()
    assert by["broken"]["reason"].str.startswith("ZeroDivisionError").all()
    meta = convbench.store.read_meta(df.attrs["run_dir"])
    assert {a["name"]: a["origin"] for a in meta["algorithms"]} == {
        "exact": "register()", "wrong": "register()", "broken": "register()"}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        (dict(name="direct"), "built-in"),
        (dict(name="9lives"), "name"),
        (dict(name="a b"), "name"),
        (dict(family=""), "family"),
        (dict(device="tpu"), "device: expected one of cpu, cuda"),
        (dict(operator="fancy"), "operator"),
        (dict(tolerance={"float32": 1e-5}), "tolerance"),
        (dict(tolerance={"float32": 1e-5, "float64": -1.0}), "tolerance"),
        (dict(supports="yes"), "supports: expected a callable"),
        (dict(prepare=lambda w: None), "prepare: must accept (w, spec)"),
        (dict(supports=lambda: None), "supports: must accept (spec)"),
        (dict(workspace=lambda a, b: 0), "workspace: must accept (spec)"),
        (dict(doc=None), "doc"),
        (dict(directions=("bwd_d",)), "directions: expected a tuple of fwd, bwd_d, bwd_w "
                                      "holding fwd"),
        (dict(directions=("fwd", "up")), "directions"),
    ],
)
def test_register_refuses_what_cannot_run(changes, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        convbench.register(mine(**changes))
    assert "mine" not in [a.name for a in convbench.algorithms()]


def test_register_refuses_other_objects():
    with pytest.raises(ValueError, match="expected a convbench.Algorithm"):
        convbench.register("direct")


def test_a_name_is_taken_until_replaced_or_unregistered():
    convbench.register(mine(doc="first"))
    with pytest.raises(ValueError, match="already registered"):
        convbench.register(mine(doc="second"))
    convbench.register(mine(doc="second"), replace=True)
    assert registry.get("mine").doc == "second"
    assert [a.name for a in convbench.algorithms()].count("mine") == 1
    convbench.unregister("mine")
    with pytest.raises(ValueError, match="algo must be one of"):
        registry.get("mine")
    with pytest.raises(ValueError, match="no registered user algorithm"):
        convbench.unregister("direct")


def test_the_same_name_may_live_on_each_device():
    convbench.register(mine())
    convbench.register(mine(device="cuda"))
    assert registry.get("mine", "cuda").device == "cuda"


# ---------------------------------------------------------------------------- entry points

ALGORITHM = mine("from_object")


def algorithm_list():
    return [mine("from_function_a"), mine("from_function_b")]


def not_algorithms():
    return 42


def raises_on_call():
    raise ImportError("No module named 'myconv_native'")


def bad_signature():
    return mine("bad_signature", prepare=lambda w: None)


def entry_point(name, target):
    return metadata.EntryPoint(name=name, value=f"tests.unit.test_plugins:{target}",
                               group=plugins.GROUP)


def discover(monkeypatch, *eps):
    """Run `plugins.load` as at start, with these entry points installed."""
    monkeypatch.setattr(plugins, "_state", {"loaded": False, "problems": [], "sources": {}})
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group: list(eps) if group == plugins.GROUP else [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [a.name for a in convbench.algorithms()]
    return names, [str(w.message) for w in caught if w.category is plugins.PluginWarning]


def test_entry_points_give_an_algorithm_a_list_or_a_function(monkeypatch):
    names, warned = discover(monkeypatch, entry_point("one", "ALGORITHM"),
                             entry_point("two", "algorithm_list"))
    assert names[-3:] == ["from_object", "from_function_a", "from_function_b"]
    assert warned == [] and plugins.problems() == []
    assert registry.origin(registry.get("from_object")).startswith(
        "'one' (tests.unit.test_plugins:ALGORITHM")


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("missing_name", "AttributeError"),
        ("raises_on_call", "ImportError: No module named 'myconv_native'"),
        ("not_algorithms", "expected an Algorithm, a list of them"),
        ("bad_signature", "prepare: must accept (w, spec)"),
    ],
)
def test_a_broken_plugin_is_a_warning_naming_it_never_a_crash(monkeypatch, target, needle):
    names, warned = discover(monkeypatch, entry_point("broken", target),
                             entry_point("fine", "ALGORITHM"))
    assert "from_object" in names and "direct" in names
    assert len(warned) == 1 and warned == plugins.problems()
    assert warned[0].startswith(f"plugin 'broken' (tests.unit.test_plugins:{target}")
    assert needle in warned[0]


def test_the_cli_prints_left_out_plugins_in_one_line_each(monkeypatch, capsys):
    discover(monkeypatch, entry_point("broken", "raises_on_call"))
    from convbench import cli

    cli._load_plugins()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: plugin 'broken'")


def test_no_plugins_switch(monkeypatch):
    monkeypatch.setenv("CONVBENCH_NO_PLUGINS", "1")
    names, warned = discover(monkeypatch, entry_point("one", "ALGORITHM"))
    assert "from_object" not in names and warned == []
