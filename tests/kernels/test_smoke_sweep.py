"""The `smoke` preset end to end through the CLI, with the real kernels."""

import pandas as pd

import convbench
from convbench import cli, sweep


def test_smoke_sweep_end_to_end(tmp_path, capsys):
    assert cli.main(["run", "sweep", "--preset", "smoke", "--results-dir", str(tmp_path),
                     "--reports-dir", str(tmp_path / "reports"), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name != "reports"]
    assert (tmp_path / "reports" / run_dir.name / "report.html").exists()
    assert f"results: {run_dir}" in out and "winner" in out
    df = convbench.load_run(run_dir)
    pd.testing.assert_frame_equal(df, pd.read_parquet(run_dir / "rows.parquet"))
    cpu = [a.name for a in convbench.algorithms("cpu") if a.default]  # opt-in ones not run
    assert len(df) == len(sweep.preset("smoke").problems) * len(cpu)
    assert set(df["algorithm"]) == set(cpu)
    assert set(df["status"]) <= {"ok", "unsupported"}
    ok = df[df["status"] == "ok"]
    assert set(ok["algorithm"]) == set(cpu), "every algorithm runs on some smoke problem"
    assert ok["accurate"].all()
    assert (ok["median_s"] > 0).all() and (ok["compile_s"] >= 0).all()
    assert (df["threads"] == 2).all()
