"""Work shared with worker processes: the same results in the same order as doing it here, and
the caller's own answer whenever a worker cannot give one."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from hmmrnn import process_pool
from hmmrnn.process_pool import map_in_processes, worker_count


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fails_in_workers(x: int) -> int:
    if os.getpid() != int(os.environ["POOL_TEST_PARENT"]):
        raise SystemExit(3)  # a worker dies; the caller's answer is the same function's
    return -x


def test_shared_results_are_in_order_and_computed_elsewhere_too():
    out = map_in_processes(square_and_pid, list(range(23)), 3)
    assert [v for v, _ in out] == [x * x for x in range(23)]
    pids = {pid for _, pid in out}
    assert os.getpid() in pids and len(pids) == 3
    # the caller's head start: it takes more, the workers the rest, the order stays
    out = map_in_processes(square_and_pid, list(range(40)), 3, head_start=6)
    assert [v for v, _ in out] == [x * x for x in range(40)]
    mine = sum(pid == os.getpid() for _, pid in out)
    assert mine == 18 and len({pid for _, pid in out}) == 3
    # a head start longer than the work: the caller does it all
    assert {pid for _, pid in map_in_processes(square_and_pid, [1, 2], 3, 10)} == {os.getpid()}


def test_a_worker_that_fails_leaves_its_share_to_the_caller(monkeypatch):
    monkeypatch.setenv("POOL_TEST_PARENT", str(os.getpid()))
    assert map_in_processes(fails_in_workers, list(range(10)), 2) == [-x for x in range(10)]


def test_no_interpreter_means_no_workers(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    out = map_in_processes(square_and_pid, list(range(5)), 4)
    assert out == [(x * x, os.getpid()) for x in range(5)]


def test_worker_count_follows_the_items_and_the_cap(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    monkeypatch.delenv(process_pool.WORKERS_ENV, raising=False)
    assert worker_count(100, 300, 150) == 1
    assert worker_count(2000, 300, 150) == 8
    assert worker_count(450, 300, 150) == 3
    monkeypatch.setenv(process_pool.WORKERS_ENV, "2")
    assert worker_count(2000, 300, 150) == 2
    monkeypatch.setenv(process_pool.WORKERS_ENV, "0")
    assert worker_count(2000, 300, 150) == 1
    monkeypatch.setenv(process_pool.WORKERS_ENV, "many")  # not a number: ignored
    assert worker_count(2000, 300, 150) == 8


@pytest.mark.parametrize("summaries", [False, True])
def test_a_large_tree_listed_by_workers_equals_the_serial_listing(
    study_tree, tmp_path, monkeypatch, summaries
):
    """Every entry field (status, reason, config, sizes, warnings, curves) is the same whether
    the folders were checked here or in worker processes; broken folders included."""
    from hmmrnn import tree

    root = tmp_path / "tree"
    shutil.copytree(study_tree, root)
    models = [p for p in sorted(root.rglob("config.json"))]
    for i in range(12):
        shutil.copytree(models[i % len(models)].parent, root / f"copy_{i}")
    (root / "copy_3" / "config.json").write_text("{not json")
    (root / "copy_5" / "metrics.jsonl").write_text('{"epoch": 1, "val_loss": 2.5}\n{"epo')
    monkeypatch.setattr(tree, "_POOL_FROM", 4)
    monkeypatch.setattr(tree, "_PER_WORKER", 3)
    monkeypatch.setenv(process_pool.WORKERS_ENV, "1")
    serial = tree.discover(root, summaries)
    monkeypatch.setenv(process_pool.WORKERS_ENV, "3")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(3)), raising=False)
    shared = tree.discover(root, summaries)
    assert len(serial) == 14 and shared == serial
    monkeypatch.chdir(tmp_path)  # a relative root: the workers run in the caller's folder
    relative = tree.discover("tree", summaries)
    assert [(e.rel, e.status, e.sizes) for e in relative] == [
        (e.rel, e.status, e.sizes) for e in serial
    ]
    assert any(e.status == "broken" for e in shared)
    if summaries:
        assert next(e for e in shared if e.rel == "copy_5").summary.best_val == 2.5


def raises_here(x: int) -> int:
    if os.getpid() == int(os.environ["POOL_TEST_PARENT"]):
        raise ValueError("a bug in the caller's share")
    import time

    time.sleep(30)
    return x


def test_an_error_in_the_callers_share_leaves_no_worker_running(monkeypatch):
    import subprocess

    monkeypatch.setenv("POOL_TEST_PARENT", str(os.getpid()))
    started = []
    real = subprocess.Popen

    def recording(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", recording)
    with pytest.raises(ValueError, match="caller's share"):
        map_in_processes(raises_here, list(range(6)), 3)
    assert len(started) == 2 and all(p.poll() is not None for p in started)


def prints_then_answers(x: int) -> tuple[int, int]:
    print("cuda not found")  # noqa: T201 - what a library might print in a worker
    os.write(1, b"\x80c\x00 raw bytes on fd 1\n")
    return x + 1, os.getpid()


def test_what_a_worker_prints_does_not_spoil_its_answer():
    out = map_in_processes(prints_then_answers, list(range(8)), 2)
    assert [v for v, _ in out] == list(range(1, 9))
    assert len({pid for _, pid in out}) == 2  # the worker's answer was taken, not redone here


def test_a_workers_folder_cannot_shadow_the_standard_library(tmp_path, monkeypatch):
    """Listing a downloaded tree from inside it: a `pickle.py` there is never imported."""
    marker = tmp_path / "ran"
    (tmp_path / "pickle.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit\n")
    monkeypatch.chdir(tmp_path)
    out = map_in_processes(square_and_pid, list(range(6)), 2)
    assert [v for v, _ in out] == [x * x for x in range(6)]
    assert not marker.exists() and len({pid for _, pid in out}) == 2
