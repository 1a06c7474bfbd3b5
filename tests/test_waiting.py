"""The worker threads queries run on (fedquery/waiting.py): kept between queries, never shared
by two jobs at once, and a job that never ends holds up no other."""

from __future__ import annotations

import threading

import pytest

from fedquery.waiting import WORKER, off_thread


def _workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == WORKER}


def test_a_thread_is_kept_for_the_next_query():
    before = _workers()
    threads = {off_thread(threading.current_thread, lambda: None) for _ in range(20)}
    assert len(threads - before) <= 1  # kept threads served all twenty (a fresh one at most)
    assert all(t.is_alive() and t.name == WORKER for t in threads)


def test_queries_run_and_answer_on_kept_threads():
    import fedquery

    con = fedquery.connect({"sources": {}})
    try:
        for i in range(20):
            assert con.sql(f"SELECT {i} AS x").fetchall() == [(i,)]
        assert len(_workers()) >= 1  # kept after the queries, waiting for the next
    finally:
        con.close()


def test_a_stuck_job_holds_up_no_other():
    release, started = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(30)

    caller = threading.Thread(target=off_thread, args=(stuck, lambda: None), daemon=True)
    caller.start()
    assert started.wait(10)
    try:
        # every kept thread may be busy: a new one takes the job, it does not queue behind
        names = {off_thread(lambda: threading.current_thread().name, lambda: None)
                 for _ in range(5)}
        assert names == {WORKER}
    finally:
        release.set()
        caller.join(10)
    assert not caller.is_alive()


def test_two_callers_never_share_a_thread_at_once():
    inside, lock, overlap = set(), threading.Lock(), []
    gate = threading.Barrier(4)

    def job() -> int:
        me = threading.get_ident()
        with lock:
            if me in inside:
                overlap.append(me)
            inside.add(me)
        try:
            gate.wait(10)  # all four jobs are running at the same time, on four threads
        finally:
            with lock:
                inside.discard(me)
        return me

    results: list[int] = []
    callers = [threading.Thread(target=lambda: results.append(off_thread(job, lambda: None)))
               for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(20)
    assert len(results) == 4 and len(set(results)) == 4 and not overlap


def test_an_error_reaches_the_caller_and_the_thread_serves_again():
    def boom() -> None:
        raise ValueError("from the worker")

    with pytest.raises(ValueError, match="from the worker"):
        off_thread(boom, lambda: None)
    assert off_thread(lambda: 7, lambda: None) == 7
