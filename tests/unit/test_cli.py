"""Bad input through the CLI: one line naming the problem, exit status 2, nothing written."""

import subprocess
import sys

import pytest

from convbench import cli

BAD_TOML = 'name = "x"\n[gird]\nfilter = [3]\n'
BAD_VALUE_TOML = 'name = "x"\n[grid]\nc = [4]\nh = [8]\nk = [4]\nfilter = [3]\nstride = [0]\n'


@pytest.fixture
def files(tmp_path):
    (tmp_path / "typo.toml").write_text(BAD_TOML)
    (tmp_path / "badvalue.toml").write_text(BAD_VALUE_TOML)
    (tmp_path / "broken.toml").write_text("name = \n")
    (tmp_path / "bad.batch").write_text("# layers\nmb1ic4ih8oc4kh3\nmb1ic4ihXoc4kh3\n")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "sweep", "--preset", "nope"], "nope"),
        (["run", "sweep", "--config", "{d}/missing.toml"], "missing.toml"),
        (["run", "sweep", "--config", "{d}/typo.toml"], "gird"),
        (["run", "sweep", "--config", "{d}/badvalue.toml"], "stride"),
        (["run", "sweep", "--config", "{d}/broken.toml"], "broken.toml"),
        (["run", "sweep", "--batch", "{d}/bad.batch"], "line 3"),
        (["run", "sweep", "--batch", "{d}/none.batch"], "none.batch"),
        (["run", "sweep", "--algo", "direct,fast"], "'fast'"),
        (["run", "sweep", "--device", "tpu"], "'tpu'"),
        (["run", "sweep", "--dir", "fwd,bwd"], "--dir: unknown direction 'bwd' (allowed: fwd, "
                                               "bwd_d, bwd_w)"),
        (["run", "sweep", "--threads", "0"], "--threads"),
        (["run", "sweep", "--max-memory", "lots"], "--max-memory"),
        (["run", "sweep", "--resume", "{d}/norun"], "not a convbench run"),
        (["run", "sweep", "--preset", "smoke", "--config", "{d}/typo.toml"], "not allowed"),
        (["run", "walk"], "walk"),
        (["compile", "--dtype", "float16"], "--dtype: unknown dtype 'float16' (allowed: "
                                            "float32, float64)"),
        (["compile", "--algo", "direct,torch"], "--algo: unknown algorithm 'torch'"),
        (["compile", "--dir", "up"], "--dir: unknown direction 'up'"),
        (["compile", "--processes", "0"], "--processes"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input(files, capsys, args, needle):
    results = files / "results"
    argv = [a.format(d=files) for a in args] + ["--results-dir", str(results)] * (
        args[0] == "run" and args[1] == "sweep")
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convbench: error:"), err
    assert needle in lines[0]
    assert not results.exists() or not any(results.iterdir())


def test_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "convbench", "run", "sweep", "--preset", "x",
                           "--results-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_cuda_sweep_without_a_gpu_skips_with_the_reason(tmp_path, capsys, monkeypatch):
    from convbench import devices, load_run

    monkeypatch.setattr(devices, "cuda_status", lambda: (False, "no CUDA device (test)"))
    assert cli.main(["run", "sweep", "--preset", "smoke", "--device", "cuda",
                     "--results-dir", str(tmp_path / "results"),
                     "--reports-dir", str(tmp_path / "reports")]) == 0
    (run_dir,) = (tmp_path / "results").iterdir()
    df = load_run(run_dir)
    assert set(df["device"]) == {"cuda"} and set(df["status"]) == {"skipped"}
    assert (df["reason"] == "device 'cuda' cannot be used: no CUDA device (test)").all()


def test_list_names_algorithms_and_presets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("direct", "im2col", "fft", "winograd_f43", "winograd_f63", "depthwise",
                 "separable", "default", "smoke", "resnet50", "mobilenet"):
        assert name in out
