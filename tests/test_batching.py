"""The dynamic batcher: same-key jobs share a bounded batch, others wait their turn, failures reach the callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from seq2seq.serving.batcher import DynamicBatcher, QueueFull


class Recorder:
    """A decode function that records its batches and can be held back until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[object, list[str]]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, key: object, sentences: list[str]) -> list[str]:
        self.release.wait(10)
        if "boom" in sentences:
            raise ValueError("boom")
        self.batches.append((key, list(sentences)))
        return [f"{key}:{s}" for s in sentences]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def started(decode: Recorder, **options: float) -> DynamicBatcher:
    batcher = DynamicBatcher(decode, **options)  # type: ignore[arg-type]
    batcher.start()
    return batcher


def queued_while_busy(recorder: Recorder, batcher: DynamicBatcher, jobs: list[tuple[str, list[str]]]) -> Iterator:
    """Hold the worker on a first job, queue `jobs` behind it, then let it go; yields the futures' results."""
    recorder.release.clear()
    first = batcher.submit("warm", ["x"])
    time.sleep(0.05)  # the worker has taken the first job and waits in decode
    futures = [batcher.submit(key, sentences) for key, sentences in jobs]
    recorder.release.set()
    first.result(10)
    return (future.result(10) for future in futures)


def test_same_key_jobs_share_one_batch_and_keep_their_order(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=0)
    results = list(queued_while_busy(recorder, batcher, [("a", ["1", "2"]), ("a", ["3"]), ("a", ["4", "5"])]))
    batcher.close()
    assert results == [["a:1", "a:2"], ["a:3"], ["a:4", "a:5"]]
    assert recorder.batches[1:] == [("a", ["1", "2", "3", "4", "5"])]
    stats = batcher.stats()
    assert (stats.requests, stats.batches, stats.sentences, stats.largest_batch) == (4, 2, 6, 5)


def test_keys_are_never_mixed_and_the_oldest_job_goes_first(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=0)
    jobs = [("a", ["1"]), ("b", ["2"]), ("a", ["3"]), ("b", ["4"])]
    results = list(queued_while_busy(recorder, batcher, jobs))
    batcher.close()
    assert results == [["a:1"], ["b:2"], ["a:3"], ["b:4"]]
    assert recorder.batches[1:] == [("a", ["1", "3"]), ("b", ["2", "4"])]


def test_batches_are_bounded_in_arrival_order_and_a_large_job_goes_alone(recorder):
    batcher = started(recorder, max_batch_sentences=3, max_wait_ms=0)
    jobs = [("a", ["1", "2"]), ("a", ["3", "4"]), ("a", ["5"]), ("a", ["6", "7", "8", "9"])]
    list(queued_while_busy(recorder, batcher, jobs))
    batcher.close()
    assert [sentences for _, sentences in recorder.batches[1:]] == [["1", "2"], ["3", "4", "5"], ["6", "7", "8", "9"]]


def test_a_lone_job_waits_at_most_max_wait(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=50)
    begin = time.monotonic()
    assert batcher.submit("a", ["1"]).result(10) == ["a:1"]
    waited = time.monotonic() - begin
    batcher.close()
    assert 0.04 <= waited < 2.0


def test_a_full_batch_does_not_wait(recorder):
    batcher = started(recorder, max_batch_sentences=2, max_wait_ms=5000)
    begin = time.monotonic()
    assert batcher.submit("a", ["1", "2"]).result(10) == ["a:1", "a:2"]
    assert time.monotonic() - begin < 2.0
    batcher.close()


def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=0)
    with pytest.raises(ValueError, match="boom"):
        batcher.submit("a", ["boom"]).result(10)
    assert batcher.submit("a", ["ok"]).result(10) == ["a:ok"]
    batcher.close()


def test_cancelled_jobs_are_skipped(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=0)
    recorder.release.clear()
    first = batcher.submit("warm", ["x"])
    time.sleep(0.05)
    cancelled, kept = batcher.submit("a", ["gone"]), batcher.submit("a", ["kept"])
    assert cancelled.cancel()
    recorder.release.set()
    first.result(10)
    assert kept.result(10) == ["a:kept"]
    batcher.close()
    assert all("gone" not in sentences for _, sentences in recorder.batches)


def test_a_full_queue_refuses_and_close_drains(recorder):
    batcher = started(recorder, max_batch_sentences=10, max_wait_ms=0, max_queued_sentences=3)
    recorder.release.clear()
    first = batcher.submit("warm", ["x"])
    time.sleep(0.05)
    waiting = batcher.submit("a", ["1", "2", "3"])
    with pytest.raises(QueueFull, match="at most 3"):
        batcher.submit("a", ["4"])
    recorder.release.set()
    batcher.close()
    assert first.result(0) == ["warm:x"] and waiting.result(0) == ["a:1", "a:2", "a:3"]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("a", ["late"])


def test_two_workers_decode_two_batches_at_once_and_lose_nothing():
    """With workers=2 a second batch starts while the first is still decoding (the barrier needs both),
    and many concurrent jobs each get exactly their own results."""
    barrier = threading.Barrier(2, timeout=10)
    calls: list[int] = []

    def decode(key: object, sentences: list[str]) -> list[str]:
        if not calls:
            calls.append(1)
            barrier.wait()  # the first batch waits until another batch is decoding beside it
        elif len(calls) == 1:
            calls.append(2)
            barrier.wait()
        return [f"{key}:{s}" for s in sentences]

    batcher = started(decode, max_batch_sentences=2, max_wait_ms=0, workers=2)  # type: ignore[arg-type]
    first, second = batcher.submit("a", ["1", "2"]), batcher.submit("a", ["3", "4"])
    assert first.result(10) == ["a:1", "a:2"] and second.result(10) == ["a:3", "a:4"]
    jobs = [(f"k{i % 3}", [f"{i}.{j}" for j in range(i % 4 + 1)]) for i in range(60)]
    futures: list = [None] * len(jobs)

    def client(indices: range) -> None:
        for i in indices:
            futures[i] = batcher.submit(*jobs[i])

    threads = [threading.Thread(target=client, args=(range(i, 60, 4),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [f.result(10) for f in futures] == [[f"{key}:{s}" for s in sentences] for key, sentences in jobs]
    batcher.close()
    assert batcher.stats().requests == 62 and batcher.stats().queued_sentences == 0


def test_workers_must_be_positive(recorder):
    with pytest.raises(ValueError, match="workers"):
        DynamicBatcher(recorder, workers=0)
