"""The runner and the store with a fake registry: every outcome becomes a row, none is lost."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import convbench
from convbench import devices, runner, store, sweep
from tests import fakes

ROOT = Path(__file__).resolve().parents[2]


def smoke(**changes):
    """The smoke preset on both devices (the fake registry has a CUDA entry)."""
    return dataclasses.replace(sweep.preset("smoke"), **{"devices": ("cpu", "cuda"), **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # a machine without a GPU, whatever this one has
        mp.setattr(devices, "cuda_status", lambda: (False, "no CUDA device (test)"))
        return runner.run_sweep(smoke(), results_dir=tmp_path_factory.mktemp("results"),
                                entries=fakes.entries(), threads=1)


def by_algo(df, name):
    return df[df["algorithm"] == name]


def test_one_row_per_problem_and_algorithm(run):
    n_problems = len(sweep.preset("smoke").problems)
    assert len(run) == n_problems * len(fakes.entries())
    assert not run.duplicated(subset=list(store.KEY)).any()
    assert set(run["schema_version"]) == {store.SCHEMA_VERSION}


def test_ok_rows_carry_timing_and_accuracy(run):
    good = by_algo(run, "good")
    assert (good["status"] == "ok").all() and good["accurate"].all()
    assert (good["median_s"] > 0).all() and (good["n_values"] == 3).all()
    assert (good["q1_s"] <= good["median_s"]).all() and (good["median_s"] <= good["q3_s"]).all()
    assert (good["max_rel_err"] < 1e-6).all()
    assert (good["gflops"] == good["flops"] / good["median_s"] / 1e9).all()
    assert (good["threads"] == 1).all()


def test_unsupported_rows_carry_the_reason(run):
    picky = by_algo(run, "picky")
    assert set(picky["status"]) == {"ok", "unsupported"}
    assert (picky.loc[picky["status"] == "unsupported", "reason"] == "only 1x1 filters").all()


def test_an_exception_becomes_an_error_row_and_the_sweep_goes_on(run):
    raises = by_algo(run, "raises")
    assert (raises["status"] == "error").all()
    assert (raises["reason"] == "RuntimeError: kernel exploded").all()
    assert (by_algo(run, "off")["status"] == "ok").all()  # later algorithms still ran


def test_wrong_numbers_are_never_accurate(run):
    zeros, off = by_algo(run, "zeros"), by_algo(run, "off")
    assert not zeros["accurate"].any() and not off["accurate"].any()
    assert zeros["warnings"].str.contains("all zeros").all()
    assert list(off["max_rel_err"]) == pytest.approx([0.01] * len(off), rel=1e-3)


def test_memory_budget_and_missing_gpu_skip_with_reasons(run):
    hungry, gpu = by_algo(run, "hungry"), by_algo(run, "gpu")
    assert (hungry["status"] == "skipped").all()
    assert hungry["reason"].str.contains("exceeds the memory budget").all()
    assert (gpu["status"] == "skipped").all()
    assert (gpu["reason"] == "device 'cuda' cannot be used: no CUDA device (test)").all()


def test_store_round_trip(run):
    run_dir = Path(run.attrs["run_dir"])
    assert {p.name for p in run_dir.iterdir()} == {"journal.jsonl", "rows.parquet", "meta.json"}
    again = convbench.load_run(run_dir)
    pd.testing.assert_frame_equal(again.drop(columns="values_s"), run.drop(columns="values_s"),
                                  check_dtype=False)
    meta = store.read_meta(run_dir)
    assert meta["schema_version"] == store.SCHEMA_VERSION and meta["complete"] is True
    assert meta["threads"] == 1 and meta["blas_threads"] == 1 and meta["machine"]["blas"]
    assert all(lib["num_threads"] == 1 for lib in meta["machine"]["blas"])
    assert sweep.from_dict(meta["config"]) == smoke()
    for key in ("versions", "cpu_model", "cpu_features", "cores", "gpu", "git_commit"):
        assert key in meta["machine"]


def test_load_run_reads_the_journal_of_a_killed_run(tmp_path):
    j = store.Journal(tmp_path)
    j.append({"problem": "p", "name": "", "algorithm": "a", "device": "cpu", "status": "ok"})
    j.close()
    with open(tmp_path / store.JOURNAL, "a") as f:
        f.write('{"problem": "p", "na')  # the row in flight when the kill came
    store.write_meta(tmp_path, {"run_id": "x"})
    df = convbench.load_run(tmp_path)
    assert len(df) == 1 and df.loc[0, "algorithm"] == "a"


def test_sigkill_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from convbench import runner, sweep
        from tests import fakes
        runner.run_sweep(sweep.preset("smoke"), results_dir={str(tmp_path)!r}, run_id="killed",
                         entries=fakes.entries(delay=0.05), threads=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = tmp_path / "killed" / store.JOURNAL
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = store.read_journal(tmp_path / "killed")
    cpu = [e for e in fakes.entries() if e.device == "cpu"]  # the smoke preset's device
    total = len(sweep.preset("smoke").problems) * len(cpu)
    assert 4 <= len(before) < total, "the kill should land mid-run"
    df = runner.run_sweep(resume=tmp_path / "killed", entries=fakes.entries(), threads=1)
    assert len(df) == total
    assert not df.duplicated(subset=list(store.KEY)).any()
    kept = {runner._key(r): r["median_s"] for r in before if r["status"] == "ok"}
    for _, row in df[df["status"] == "ok"].iterrows():
        if runner._key(row) in kept:  # rows measured before the kill are not measured again
            assert row["median_s"] == kept[runner._key(row)]
    assert store.read_meta(tmp_path / "killed")["complete"] is True


def test_a_sweep_selecting_no_algorithm_is_an_error_before_anything_is_written(tmp_path):
    cpu_only = [e for e in fakes.entries() if e.device == "cpu"]
    with pytest.raises(ValueError, match="no registered algorithm"):
        runner.run_sweep(smoke(devices=("cuda",)), results_dir=tmp_path / "r", entries=cpu_only)
    assert not (tmp_path / "r").exists()


def test_ctrl_c_saves_and_can_resume(tmp_path):
    calls = []

    def progress(row):
        calls.append(row)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(runner.SweepInterrupted) as stop:
        runner.run_sweep(smoke(), results_dir=tmp_path, run_id="r", entries=fakes.entries(),
                         progress=progress, threads=1)
    assert stop.value.run_dir == tmp_path / "r"
    assert len(pd.read_parquet(tmp_path / "r" / store.ROWS)) == 3
    assert store.read_meta(tmp_path / "r")["complete"] is False
    df = runner.run_sweep(resume=tmp_path / "r", entries=fakes.entries(), threads=1)
    assert len(df) == len(smoke().problems) * len(fakes.entries())


def test_machine_warnings():
    from convbench import machine

    assert machine.load_warning(load=0.4, cores=2) is None
    assert "load average 3.0 on 2 cores" in machine.load_warning(load=3.0, cores=2)
    avx512 = ["avx2", "avx512f"]
    pinned = [{"internal_api": "openblas", "architecture": "Haswell", "prefix": "libopenblas"}]
    best = [{"internal_api": "openblas", "architecture": "SkylakeX", "prefix": "libopenblas"}]
    assert "libopenblas (Haswell)" in machine.blas_warning(pinned, avx512)
    assert machine.blas_warning(best, avx512) is None
    assert machine.blas_warning(pinned, ["avx2"]) is None


def test_every_row_names_the_machine_meta_lists(run):
    from convbench import cache

    meta = store.read_meta(Path(run.attrs["run_dir"]))
    assert set(run["machine"]) == {cache.machine_id(1)} == set(meta["machines"])
    record = meta["machines"][cache.machine_id(1)]
    assert record["fingerprint"]["hostname"] == meta["machine"]["hostname"]
    assert record["threads"] == 1 and record["roofline"] == meta["roofline"]


def test_the_machine_id_is_the_host_and_its_cache_key():
    from convbench import cache

    a, b = cache.machine_id(1), cache.machine_id(2)
    assert a == cache.machine_id(1)  # stable: no volatile field
    assert a != b and a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0]


def test_a_run_still_being_written_cannot_be_resumed_alongside(tmp_path, capsys):
    from convbench import cli

    runner.run_sweep(sweep.preset("smoke"), results_dir=tmp_path, run_id="held",
                     entries=fakes.entries()[:1], threads=1, record=False)
    before = (tmp_path / "held" / store.JOURNAL).read_bytes()
    held = store.Journal(tmp_path / "held")  # the run "still going"
    try:
        with pytest.raises(ValueError, match="being written by another process"):
            runner.run_sweep(resume=tmp_path / "held", entries=fakes.entries(), threads=1)
        code = cli.main(["run", "sweep", "--resume", str(tmp_path / "held")])
    finally:
        held.close()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "being written by another process" in err
    assert (tmp_path / "held" / store.JOURNAL).read_bytes() == before
