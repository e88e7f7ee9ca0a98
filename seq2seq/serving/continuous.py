"""Continuous (iteration-level) batching: sentences join the running batch between decoder steps and leave it
the step they end, the way current LLM servers batch.

`ContinuousBatcher.submit(key, lines)` queues a job and returns a `concurrent.futures.Future` at once, like
`batcher.DynamicBatcher`, whose place it takes in the server. Each worker thread keeps one running batch
(`seq2seq.decoding.running.RunningTranslation`) of one decode setting (`key`): between two steps it takes
the queued sentences of that setting, oldest first, while the batch holds fewer than `max_batch_sentences`,
and a job's future gets its results once its last sentence has ended. So nobody waits for a batch to fill
or for a long sentence of another request to finish, and under load the batch stays full. Queued lines join
a batch that is decoding in groups (a quarter of `max_batch_sentences`, or whatever has waited `max_wait_ms`):
they are encoded together, and the encoder, which reads its weights once per source position, costs nearly as
much for one sentence as for a group (measured: docs/benchmarks.md#serving).

A job whose setting differs from the running batch's is not passed over for long: once it is the oldest
queued job, the worker admits nothing more, lets its batch run empty, and starts the next batch with that
job's setting. Jobs that cannot join a running batch (`Translator.running` says None: sampling, attention
weights, a shortlist, forced prefixes or required phrases, or a backend without running batches) are
decoded as in dynamic batching (`batcher.DynamicBatcher`, which this extends), whole, together with the
later such jobs of the same setting that arrive within `max_wait_ms`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from seq2seq.serving import batcher
from seq2seq.serving.batcher import DynamicBatcher

log = logging.getLogger(__name__)


class RunningBatch(Protocol):
    """A running batch (`Translator.running`, around `seq2seq.decoding.running.RunningTranslation`)."""

    def __len__(self) -> int: ...

    def add(self, sentences: Sequence[Any], tags: Sequence[Hashable]) -> None: ...

    def advance(self) -> list[tuple[Hashable, Any]]: ...


@dataclass(eq=False)
class Job(batcher.Job):
    running: bool = True  # whether its sentences can join a running batch
    admitted: int = 0  # sentences handed to a running batch so far
    results: list[Any] = field(default_factory=list)
    left: int = 0  # sentences not yet ended

    def __post_init__(self) -> None:
        self.results = [None] * len(self.sentences)
        self.left = len(self.sentences)


class ContinuousBatcher(DynamicBatcher):
    """Decodes jobs in `workers` threads, each with a running batch that jobs join between steps; the jobs
    that cannot join one are batched whole, as `DynamicBatcher` batches every job.

    `runs(key, sentences)` says whether a job's sentences can join a running batch, `running(key)` starts one
    for `key`, and `decode(key, sentences)` decodes whole jobs (the others), one result per sentence.
    """

    _pending: list[Job]  # every queued job is this module's `Job` (`_new_job`)

    def __init__(
        self,
        runs: Callable[[Any, list[Any]], bool],
        running: Callable[[Any], RunningBatch],
        decode: Callable[[Any, list[Any]], Sequence[Any]],
        max_batch_sentences: int = 32,
        max_wait_ms: float = 5.0,
        max_queued_sentences: int = 1000,
        workers: int = 1,
    ) -> None:
        super().__init__(decode, max_batch_sentences, max_wait_ms, max_queued_sentences, workers)
        self.runs, self.running = runs, running
        self.join_at = max(1, max_batch_sentences // 4)  # queued lines that join without waiting for more

    def _new_job(self, key: Hashable, sentences: list[Any]) -> Job:
        return Job(key, sentences, running=self.runs(key, sentences))

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        batch: RunningBatch | None = None  # this worker's running batch
        key: Hashable = None
        owners: dict[Hashable, tuple[Job, int]] = {}  # tag -> (job, sentence index) of the sentences in it
        tags = 0
        while True:
            whole: list[batcher.Job] | None = None  # jobs decoded whole (possibly none: all cancelled)
            admitted: list[tuple[Job, int]] = []
            with self._cond:
                while batch is None and not self._pending:
                    if self._closed:
                        return
                    self._cond.wait()
                if batch is None:
                    first = self._pending[0]
                    if first.running:
                        key, batch = first.key, self.running(first.key)
                    else:
                        group, wait = self._wait_for_company([job for job in self._pending if not job.running])
                        if wait > 0:
                            self._cond.wait(wait)
                            continue
                        whole = self._take(group)
                if batch is not None and self._time_to_admit(key, len(batch)):
                    admitted = self._admit(key, self.max_batch_sentences - len(batch))
            if whole is not None:
                self._decode_group(whole)
                continue
            assert batch is not None
            if admitted:
                numbers = range(tags, tags + len(admitted))
                tags += len(admitted)
                owners.update(zip(numbers, admitted))
                try:
                    batch.add([job.sentences[i] for job, i in admitted], list(numbers))
                except Exception as exc:
                    self._fail(exc, {job for job, _ in owners.values()})
                    batch, owners = None, {}
                    continue
            try:
                ended = batch.advance()
            except Exception as exc:  # every job with a sentence in the batch hears of it; the worker lives on
                self._fail(exc, {job for job, _ in owners.values()})
                batch, owners = None, {}
                continue
            self._deliver(ended, owners)
            if not len(batch):
                batch = None

    def _time_to_admit(self, key: Hashable, running: int) -> bool:
        """Whether the queued lines of `key` join now: when the batch is empty, when they fill it, when they
        number `join_at`, or when the oldest has waited `max_wait`. Lines joining together are encoded in one
        call: the encoder runs over whole sentences, and run for one sentence at a time it would cost about
        as much as for a group (its weights are read once per source position either way). Called with the
        lock."""
        if running == 0:
            return True
        waiting, oldest = 0, None
        for job in self._pending:
            if job.key != key or not job.running:
                break
            waiting += len(job.sentences) - job.admitted
            oldest = job.arrived if oldest is None else oldest
        if oldest is None:
            return False
        room = self.max_batch_sentences - running
        return waiting >= min(room, self.join_at) or time.monotonic() - oldest >= self.max_wait

    def _admit(self, key: Hashable, room: int) -> list[tuple[Job, int]]:
        """Up to `room` queued sentences of `key`'s running jobs, oldest first; none once an older job of
        another setting waits (the batch then runs empty, and that job goes next). Called with the lock."""
        admitted: list[tuple[Job, int]] = []
        for job in list(self._pending):
            if room <= 0 or job.key != key or not job.running:
                break
            if job.admitted == 0 and not job.future.set_running_or_notify_cancel():
                self._pending.remove(job)  # cancelled before it started
                self._stats.queued_sentences -= len(job.sentences)
                continue
            take = min(room, len(job.sentences) - job.admitted)
            admitted += [(job, i) for i in range(job.admitted, job.admitted + take)]
            job.admitted += take
            room -= take
            self._stats.queued_sentences -= take
            if job.admitted == len(job.sentences):
                self._pending.remove(job)
        if admitted:
            self._stats.batches += 1
        return admitted

    def _deliver(self, ended: list[tuple[Hashable, Any]], owners: dict[Hashable, tuple[Job, int]]) -> None:
        """Hand each ended sentence to its job; a job whose sentences have all ended gets its results."""
        finished = []
        for tag, result in ended:
            job, i = owners.pop(tag)
            job.results[i] = result
            job.left -= 1
            if job.left == 0:
                finished.append(job)
        with self._cond:
            self._stats.steps += 1
            self._stats.largest_batch = max(self._stats.largest_batch, len(owners) + len(ended))
            self._stats.requests += len(finished)
            self._stats.sentences += sum(len(job.sentences) for job in finished)
        for job in finished:
            job.future.set_result(job.results)

    def _fail(self, exc: Exception, jobs: set[Job]) -> None:
        log.exception("decoding failed", exc_info=exc)
        with self._cond:
            for job in jobs:  # a job partly admitted leaves the queue too: its other sentences are lost with it
                if job in self._pending:
                    self._pending.remove(job)
                    self._stats.queued_sentences -= len(job.sentences) - job.admitted
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)
