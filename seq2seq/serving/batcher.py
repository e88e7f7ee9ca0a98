"""Dynamic batching: requests that arrive within a few milliseconds of each other share one decode.

`DynamicBatcher.submit(key, sentences)` queues a job and returns a `concurrent.futures.Future` at once;
worker threads do the decoding. A free worker takes the oldest queued job, waits until that job has waited
`max_wait_ms` (or until enough sentences are queued), and decodes, in one call of `decode(key, sentences)`,
the oldest job together with the later jobs of the same `key` (the same decode settings), in arrival order,
up to `max_batch_sentences`. Jobs of other keys wait for a later batch, and the oldest job always goes next.
A job is never split: a job larger than `max_batch_sentences` is decoded alone (`decode` batches it further).

While a worker decodes, new jobs pile up, so under load the batches fill by themselves and nobody waits
`max_wait_ms` on top. `workers` > 1 runs that many decoding threads, each taking the next batch: on a CPU,
with one PyTorch thread per decode (`torch.set_num_threads(1)`), two small batches on two cores go faster
than one batch whose matrix products are split across both (docs/benchmarks.md, serving under load).
Callers in an asyncio event loop await `asyncio.wrap_future(future)`, so the loop is free while the
workers decode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

DecodeFn = Callable[[Any, list[Any]], Sequence[Any]]  # (key, sentences) -> one result per sentence, in order


class QueueFull(RuntimeError):
    """More sentences are waiting than `max_queued_sentences`; the caller should come back later."""


@dataclass(eq=False)  # compared and hashed by identity: two requests with the same lines are two jobs
class Job:
    key: Hashable  # jobs share a batch only when their keys are equal
    sentences: list[Any]  # the request's lines, as `decode` takes them
    future: Future = field(default_factory=Future)  # gets the list of results, one per sentence
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Counters since start: `batches < requests` means requests shared decodes."""

    requests: int = 0  # jobs decoded (cancelled ones are not counted)
    sentences: int = 0
    batches: int = 0  # calls of `decode` (continuous batching: also the groups of sentences that joined a batch)
    steps: int = 0  # continuous batching: decoder steps of the running batches
    largest_batch: int = 0  # sentences in the largest decode (continuous batching: in a running batch at once)
    queued_sentences: int = 0  # waiting now

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Queued(Protocol):
    key: Hashable
    sentences: list[Any]


Q = TypeVar("Q", bound=Queued)


def select_jobs(jobs: Sequence[Q], max_batch_sentences: int) -> tuple[list[Q], bool]:
    """The first job and the later ones of its key, in order, until the next would not fit one batch of
    `max_batch_sentences` (a first job larger than that goes alone); and whether the batch is full."""
    first = jobs[0]
    group, size = [first], len(first.sentences)
    for job in jobs[1:]:
        if job.key != first.key:
            continue
        if size + len(job.sentences) > max_batch_sentences:
            return group, True
        group.append(job)
        size += len(job.sentences)
    return group, size >= max_batch_sentences


class DynamicBatcher:
    """Groups jobs by key into bounded batches and decodes them in `workers` threads, one batch per thread."""

    def __init__(
        self,
        decode: DecodeFn,
        max_batch_sentences: int = 32,
        max_wait_ms: float = 5.0,
        max_queued_sentences: int = 1000,
        workers: int = 1,
    ) -> None:
        if max_batch_sentences < 1 or max_wait_ms < 0 or max_queued_sentences < 1 or workers < 1:
            raise ValueError("max_batch_sentences, max_queued_sentences and workers must be >= 1, max_wait_ms >= 0")
        self.decode = decode
        self.max_batch_sentences = max_batch_sentences
        self.max_wait = max_wait_ms / 1000.0
        self.max_queued_sentences = max_queued_sentences
        self._pending: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._stats = BatchStats()
        self._threads = [
            threading.Thread(target=self._run, name=f"seq2seq-decoder-{i}", daemon=True) for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float | None = 30.0) -> None:
        """Decode what is queued, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(**self._stats.to_dict())

    def submit(self, key: Hashable, sentences: Sequence[Any]) -> Future:
        """Queue `sentences` for decoding with settings `key`; the future gets one result per sentence."""
        job = self._new_job(key, list(sentences))
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            queued = self._stats.queued_sentences
            if queued and queued + len(job.sentences) > self.max_queued_sentences:
                raise QueueFull(f"{queued} sentences are waiting (at most {self.max_queued_sentences})")
            self._pending.append(job)
            self._stats.queued_sentences += len(job.sentences)
            self._cond.notify_all()
        return job.future

    def _new_job(self, key: Hashable, sentences: list[Any]) -> Job:
        return Job(key, sentences)

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        while (jobs := self._next_group()) is not None:
            self._decode_group(jobs)

    def _next_group(self) -> list[Job] | None:
        """The next batch's jobs, after the oldest one has waited `max_wait`; None once closed and empty."""
        with self._cond:
            while True:  # looked at afresh after every wait: another worker may have taken the jobs
                if not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                group, wait = self._wait_for_company(self._pending)
                if wait <= 0:
                    return self._take(group)
                self._cond.wait(wait)

    def _wait_for_company(self, jobs: list[Job]) -> tuple[list[Job], float]:
        """The next batch among the queued `jobs` (`select_jobs`), and the seconds its oldest job still waits
        for company: until it has waited `max_wait` or the batch is full (0 or less: go). Called with the lock."""
        group, full = select_jobs(jobs, self.max_batch_sentences)
        if full or self._closed:
            return group, 0.0
        return group, jobs[0].arrived + self.max_wait - time.monotonic()

    def _take(self, group: list[Job]) -> list[Job]:
        """`group` off the queue; the jobs of it not cancelled meanwhile. Called with the lock."""
        for job in group:
            self._pending.remove(job)
        self._stats.queued_sentences -= sum(len(job.sentences) for job in group)
        return [job for job in group if job.future.set_running_or_notify_cancel()]

    def _decode_group(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        sentences = [s for job in jobs for s in job.sentences]
        try:
            results = list(self.decode(jobs[0].key, sentences))
            if len(results) != len(sentences):
                raise RuntimeError(f"decode returned {len(results)} results for {len(sentences)} sentences")
        except Exception as exc:  # every waiting caller hears of it; the worker lives on
            log.exception("decoding a batch of %d sentences failed", len(sentences))
            for job in jobs:
                job.future.set_exception(exc)
            return
        with self._cond:
            self._stats.batches += 1
            self._stats.requests += len(jobs)
            self._stats.sentences += len(sentences)
            self._stats.largest_batch = max(self._stats.largest_batch, len(sentences))
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.sentences)])
            start += len(job.sentences)
