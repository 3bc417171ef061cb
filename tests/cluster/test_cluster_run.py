"""Sweeps through a Dask cluster: the same rows as a local run, each journaled once, whatever
dies; the refusals (no scheduler, another convbench) in one line."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the cluster extra is not installed")

from convbench import cache, cli, cluster, devices, runner, store, sweep, worker  # noqa: E402
from tests import fakes  # noqa: E402
from tests.cluster.conftest import local_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def grid(n_filters: int = 3) -> sweep.SweepConfig:
    """Problems enough for several tasks: filter sizes at strides 1 and 2, tiny."""
    return sweep.from_dict({
        "name": "cluster-test",
        "timing": {"min_time": 0.0005, "values": 3, "max_seconds": 0.2, "warmups": 1},
        "grid": {"n": [1], "c": [4], "k": [4], "h": [8], "filter": list(range(1, 2 * n_filters, 2)),
                 "stride": [1, 2], "padding": ["same"]}})


def keys(run_dir) -> list[tuple]:
    return [runner._key(r) for r in store.read_journal(run_dir)]


def outcome(df) -> set[tuple]:
    cols = ["problem", "algorithm", "status", "accurate"]
    return set(df[cols].astype(str).itertuples(index=False, name=None))


def test_a_cluster_sweep_gives_the_rows_of_a_local_run(scheduler, tmp_path):
    config = sweep.preset("smoke")
    here = runner.run_sweep(config, results_dir=tmp_path / "local", entries=fakes.entries(),
                            threads=1, record=False)
    there = cluster.run_sweep(config, scheduler, results_dir=tmp_path / "cluster",
                              entries=fakes.entries())
    assert outcome(there) == outcome(here)
    assert len(there) == len(config.problems) * 6  # the six CPU fakes
    run_dir = Path(there.attrs["run_dir"])
    assert sorted(keys(run_dir)) == sorted(set(keys(run_dir)))
    meta = store.read_meta(run_dir)
    assert meta["complete"] is True and meta["cluster"]["scheduler"] == scheduler
    assert set(there["machine"]) == set(meta["machines"]) == {cache.machine_id(1)}
    assert meta["machines"][cache.machine_id(1)]["fingerprint"]["cpu_model"]


def test_cuda_cases_on_workers_without_a_gpu_are_skipped_with_the_reason(
        scheduler, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cuda_status", lambda: (False, "no CUDA device (test)"))
    config = dataclasses.replace(sweep.preset("smoke"), devices=("cpu", "cuda"),
                                 algorithms=("good", "gpu"))
    df = cluster.run_sweep(config, scheduler, results_dir=tmp_path, entries=fakes.entries())
    gpu = df[df["algorithm"] == "gpu"]
    assert len(gpu) == len(config.problems)
    assert (gpu["status"] == "skipped").all()
    assert (gpu["reason"] == "device 'cuda' cannot be used: no CUDA device (test)").all()
    assert (df.loc[df["algorithm"] == "good", "status"] == "ok").all()


def test_no_scheduler_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    results = tmp_path / "results"
    code = cli.main(["run", "sweep", "--preset", "smoke", "--cluster", "tcp://127.0.0.1:9",
                     "--results-dir", str(results), "--reports-dir", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no Dask scheduler answers at 'tcp://127.0.0.1:9'" in err
    assert not results.exists() and not (tmp_path / "rep").exists()


@pytest.mark.parametrize("address", ["nonsense", "tcp://127.0.0.1:port"])
def test_a_malformed_address_is_one_line_exit_2(tmp_path, capsys, address):
    code = cli.main(["run", "sweep", "--preset", "smoke", "--cluster", address,
                     "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a scheduler address" in err
    assert not (tmp_path / "r").exists()


def test_a_worker_of_another_version_is_refused_naming_both(scheduler):
    mine = worker.identity()
    other = {**mine, "convbench": "0.0.1", "kernels": "0123456789ab"}
    with distributed.Client(scheduler, set_as_default=False) as client:
        with pytest.raises(ValueError) as err:
            cluster.check_workers(client, other)
    text = str(err.value)
    assert "convbench 0.0.1 (kernels 0123456789ab" in text
    assert f"convbench {mine['convbench']} (kernels {mine['kernels']}" in text
    # a worker that joins after the check refuses the task itself
    spec = sweep.preset("smoke").problems[0]
    with pytest.raises(worker.Mismatch, match="the client convbench 0.0.1"):
        worker.run_batch([spec], fakes.entries()[:1], sweep.TimingConfig(), other)


def test_a_second_answer_for_a_row_is_never_journaled(tmp_path):
    run = runner.open_run(sweep.preset("smoke"), None)
    runner.create_run(run, tmp_path, "twice")
    journal = store.Journal(run.run_dir)
    row = {"problem": "p", "name": "", "algorithm": "good", "device": "cpu", "status": "ok"}
    assert runner.record(run, row, journal) is True
    assert runner.record(run, dict(row), journal) is False
    journal.close()
    assert len(store.read_journal(run.run_dir)) == 1


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "MAX_PROBLEMS_PER_TASK", 2)  # three tasks of two problems
    config = grid()
    with local_cluster(processes=True) as lc, \
            distributed.Client(lc.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(1)
        pid = next(iter(client.run(os.getpid).values()))
        killed = []

        def kill_once(row):
            if not killed:
                os.kill(pid, signal.SIGKILL)  # mid-sweep: the next task is running there
                killed.append(row)

        df = cluster.run_sweep(config, lc.scheduler_address, results_dir=tmp_path,
                               entries=fakes.entries(delay=0.002), progress=kill_once)
        new_pid = next(iter(client.run(os.getpid).values()))
    assert killed and new_pid != pid  # the worker did die, and the nanny replaced it
    run_dir = Path(df.attrs["run_dir"])
    assert len(keys(run_dir)) == len(set(keys(run_dir))) == len(config.problems) * 6
    assert store.read_meta(run_dir)["complete"] is True


def test_a_killed_client_resumes_with_only_the_missing_rows(scheduler, tmp_path):
    script = textwrap.dedent(f"""
        from convbench import cluster, sweep
        from tests import fakes
        from tests.cluster.test_cluster_run import grid
        cluster.MAX_PROBLEMS_PER_TASK = 1  # rows arrive a problem at a time: a kill between
        cluster.run_sweep(grid(4), {scheduler!r}, results_dir={str(tmp_path)!r},
                          run_id="killed", entries=fakes.entries(delay=0.002))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    journal = tmp_path / "killed" / store.JOURNAL
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(store.read_journal(tmp_path / "killed")) >= 6:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = keys(tmp_path / "killed")
    total = len(grid(4).problems) * 6
    assert 6 <= len(before) < total, "the kill should land mid-run"
    df = cluster.run_sweep(resume=tmp_path / "killed", scheduler=scheduler,
                           entries=fakes.entries())
    after = keys(tmp_path / "killed")
    assert after[:len(before)] == before  # rows of the killed client are kept, not redone
    assert len(after) == len(set(after)) == total == len(df)
    assert store.read_meta(tmp_path / "killed")["complete"] is True


def test_a_second_timing_worker_on_a_host_is_refused(scheduler, capsys):
    other = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
                              "--name", worker.worker_name(), "--nthreads", "1",
                              "--no-dashboard", "--host", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with distributed.Client(scheduler, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        code = cli.main(["worker", scheduler])
    finally:
        other.terminate()
        other.wait()
    err = capsys.readouterr().err
    assert code == 2
    assert f"already has a timing worker on this host ({worker.worker_name()})" in err
    assert "Traceback" not in err


def test_the_command_line_runs_a_sweep_on_the_cluster_and_reports_it(scheduler, tmp_path,
                                                                     capsys):
    """The real registry's SciPy baseline: nothing to compile on the worker."""
    code = cli.main(["run", "sweep", "--preset", "smoke", "--algo", "scipy", "--cluster",
                     scheduler, "--results-dir", str(tmp_path / "res"),
                     "--reports-dir", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 0
    (run_dir,) = (tmp_path / "res").iterdir()
    df = store.load_run(run_dir)
    assert (df["status"] == "ok").all() and len(df) == len(sweep.preset("smoke").problems)
    assert (tmp_path / "rep" / run_dir.name / "report.html").exists()
    assert f"results: {run_dir}" in out
    # --threads is each worker's own
    assert cli.main(["run", "sweep", "--cluster", scheduler, "--threads", "2"]) == 2
    assert "--threads: not with --cluster" in capsys.readouterr().err


def test_a_case_that_kills_every_worker_becomes_error_rows_and_the_sweep_goes_on(tmp_path):
    import dask

    config = sweep.preset("smoke")
    last = config.problems[-1]  # the tasks before it are done when it kills the worker
    entries = [fakes.entries()[0], dataclasses.replace(
        fakes.killer(), supports=lambda s, last=last: None if s == last else "not here")]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            local_cluster(processes=True) as lc:
        df = cluster.run_sweep(config, lc.scheduler_address, results_dir=tmp_path,
                               entries=entries)
    lost = df[df["problem"] == last.id]
    assert (lost["status"] == "error").all() and len(lost) == 2
    assert lost["reason"].str.startswith("KilledWorker:").all()
    rest = df[df["problem"] != last.id]
    assert set(rest["status"]) == {"ok", "unsupported"} and len(rest) == 4
    assert store.read_meta(Path(df.attrs["run_dir"]))["complete"] is True


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate (its own CA) and its key, made with openssl."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    tmp = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
                    "-subj", "/CN=convbench-test",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return str(tmp / "cert.pem"), str(tmp / "key.pem")


def test_a_tls_cluster_runs_with_certificates_and_refuses_without(certificate, tmp_path,
                                                                   capsys):
    from distributed.security import Security

    cert, key = certificate
    server = Security(tls_ca_file=cert, tls_scheduler_cert=cert, tls_scheduler_key=key,
                      tls_worker_cert=cert, tls_worker_key=key, tls_client_cert=cert,
                      tls_client_key=key, require_encryption=True)
    with local_cluster(processes=False, security=server) as lc:
        address = lc.scheduler_address
        assert address.startswith("tls://")
        args = ["run", "sweep", "--preset", "smoke", "--algo", "scipy", "--results-dir",
                str(tmp_path / "res"), "--reports-dir", str(tmp_path / "rep")]
        assert cli.main([*args, "--cluster", address, "--tls-ca-file", cert,
                         "--tls-cert", cert, "--tls-key", key]) == 0
        assert cli.main([*args, "--cluster", address]) == 2
        assert cli.main([*args, "--cluster", address, "--tls-cert", cert]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any("is a TLS address: give --tls-ca-file" in line for line in err)
    assert any("give all three, or none" in line for line in err)
    assert len(list((tmp_path / "res").iterdir())) == 1  # the refused runs wrote nothing


def test_the_pending_cases_make_one_task_per_problem():
    config = grid(2)
    entries = fakes.entries()[:3]
    cases = [(spec, a) for spec in config.problems for a in entries][1:]  # one case done
    tasks = cluster.batches(cases, named=True)
    assert [specs for specs, _ in tasks] == [[p] for p in config.problems]
    assert tasks[0][1] == [("picky", "cpu"), ("raises", "cpu")]
    assert all(names == [(a.name, a.device) for a in entries] for _, names in tasks[1:])


def test_briefly_timed_problems_share_tasks_of_the_same_algorithms():
    config = grid(4)  # 8 problems
    entries = fakes.entries()[:3]
    cases = [(spec, a) for spec in config.problems for a in entries][1:]  # one case done
    brief = dataclasses.replace(config.timing, min_time=0.001, values=3, warmups=1)
    per = cluster.problems_per_task(brief, len(entries))  # 0.25 s / 12 ms: the cap, 8
    assert per == cluster.MAX_PROBLEMS_PER_TASK == 8
    tasks = cluster.batches(cases, named=True, timing=brief)
    # the first problem lost a case: its algorithms differ, so it goes alone
    assert [len(specs) for specs, _ in tasks] == [1, 7]
    assert [p for specs, _ in tasks for p in specs] == list(config.problems)
    long = dataclasses.replace(brief, min_time=0.05)  # 0.6 s a problem: one a task
    assert cluster.problems_per_task(long, len(entries)) == 1
    assert len(cluster.batches(cases, named=True, timing=long)) == len(config.problems)
    middle = dataclasses.replace(brief, min_time=0.01)  # 0.12 s a problem: two a task
    assert [len(s) for s, _ in cluster.batches(cases, named=True, timing=middle)] == [1, 2, 2, 2, 1]
