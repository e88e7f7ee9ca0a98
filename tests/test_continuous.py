"""Continuous batching: sentences that join a running search get what they get alone; the scheduler admits
jobs between steps, hands each back as soon as its last sentence ends, and keeps order, limits and fairness."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from typing import Any

import pytest
import torch

from seq2seq.config import DecodeConfig, ModelConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.model_search import translate_batch
from seq2seq.decoding.running import RunningTranslation
from seq2seq.decoding.search import Hypothesis
from seq2seq.model.seq2seq import build_model
from seq2seq.serving.batcher import QueueFull
from seq2seq.serving.continuous import ContinuousBatcher

from .tiny_models import corpus_lines, tiny_model, tiny_tokenizer

SOURCES = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15], [16], [17, 18, 19, 20, 21, 22, 23, 24], [25, 26, 27]]


class IdTokenizer:
    """Sentences written as space-separated ids (the search test's sources), for RunningTranslation."""

    def encode_src(self, sentences: Sequence[str]) -> list[list[int]]:
        return [[int(t) for t in s.split()] for s in sentences]


def alone(model: Any, cfg: DecodeConfig, source: list[int]) -> list[Hypothesis]:
    return translate_batch(model, make_batch([source]), cfg)[0]


def join_in_waves(model: Any, cfg: DecodeConfig) -> dict[Hashable, list[Hypothesis]]:
    """The sources join one running batch in three waves, a few steps apart, while earlier ones decode."""
    running = RunningTranslation(model, IdTokenizer(), cfg, torch.device("cpu"))  # type: ignore[arg-type]
    texts = [" ".join(map(str, s)) for s in SOURCES]
    waves, results = {0: [0, 1], 2: [2, 3], 3: [4], 6: [5]}, {}
    step, joined_running = 0, 0
    while step <= max(waves) or len(running):
        if step in waves:
            joined_running += len(running) > 0
            running.add([texts[i] for i in waves[step]], waves[step])
        for tag, hyps in running.advance():
            results[tag] = hyps
        step += 1
    assert joined_running == len(waves) - 1  # every later wave joined sentences still being decoded
    return results


@pytest.mark.parametrize(
    "cell,attention,beam_size,coverage",
    [
        ("gru", "bahdanau", 1, 0.0),
        ("lstm", "none", 1, 0.0),
        ("gru", "bahdanau", 3, 0.0),
        ("lstm", "luong_general", 4, 0.0),
        ("rnn", "bahdanau", 3, 0.4),
    ],
)
def test_sentences_that_join_a_running_search_get_what_they_get_alone(cell, attention, beam_size, coverage):
    torch.manual_seed(7)
    config = ModelConfig(cell=cell, attention=attention, embedding_size=16, hidden_size=24)
    model = build_model(config, 40, 30).eval()
    cfg = DecodeConfig(beam_size=beam_size, nbest=beam_size, alpha=0.6, max_len_b=7, coverage_penalty=coverage)
    joined = join_in_waves(model, cfg)
    assert sorted(joined) == list(range(len(SOURCES)))
    for i, source in enumerate(SOURCES):
        expected = alone(model, cfg, source)
        assert [h.tokens for h in joined[i]] == [h.tokens for h in expected]
        assert [h.score for h in joined[i]] == pytest.approx([h.score for h in expected], abs=1e-4)


def test_an_ensemble_runs_too():
    torch.manual_seed(8)
    members = [build_model(ModelConfig(embedding_size=16, hidden_size=24), 40, 30) for _ in range(2)]
    ensemble = Ensemble(members).eval()
    for beam_size in (1, 3):
        cfg = DecodeConfig(beam_size=beam_size, max_len_b=7)
        joined = join_in_waves(ensemble, cfg)
        assert [joined[i][0].tokens for i in range(len(SOURCES))] == [
            alone(ensemble, cfg, s)[0].tokens for s in SOURCES
        ]


def test_running_translation_equals_translate_sentences_with_a_tokenizer(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    model, _ = tiny_model(tokenizer, seed=3, hidden_size=16, embedding_size=16)
    lines = [*corpus_lines("test", 8)[0][:6], "", "  "]
    cfg = DecodeConfig(beam_size=2, max_len_b=10)
    expected = translate_sentences(model, tokenizer, lines, cfg, torch.device("cpu"))
    running = RunningTranslation(model, tokenizer, cfg, torch.device("cpu"))
    running.add(lines[:3], [0, 1, 2])
    got = dict(running.advance())
    running.add(lines[3:], list(range(3, len(lines))))
    while len(running):
        got.update(running.advance())
    assert [got[i][0].tokens for i in range(len(lines))] == [hyps[0].tokens for hyps in expected]
    assert got[6][0].tokens == [] and got[7][0].tokens == []


def test_sampling_does_not_run():
    model = build_model(ModelConfig(embedding_size=8, hidden_size=8), 20, 20)
    with pytest.raises(ValueError, match="sampling"):
        RunningTranslation(model, IdTokenizer(), DecodeConfig(sampling=True), torch.device("cpu"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the scheduler
class CountdownBatch:
    """A fake running batch: sentence n ends after n steps. Records every step's members."""

    def __init__(self, log: list[list[Any]], fail_on: Any = None) -> None:
        self.left: dict[Hashable, int] = {}
        self.sentence: dict[Hashable, Any] = {}
        self.log, self.fail_on = log, fail_on

    def __len__(self) -> int:
        return len(self.left)

    def add(self, sentences: Sequence[Any], tags: Sequence[Hashable]) -> None:
        for s, tag in zip(sentences, tags):
            self.left[tag], self.sentence[tag] = int(s), s

    def advance(self) -> list[tuple[Hashable, Any]]:
        self.log.append(sorted(self.sentence[t] for t in self.left))
        if self.fail_on is not None and self.fail_on in self.sentence.values():
            raise RuntimeError("boom")
        time.sleep(0.002)
        ended = []
        for tag in list(self.left):
            self.left[tag] -= 1
            if self.left[tag] <= 0:
                del self.left[tag]
                ended.append((tag, f"{self.sentence.pop(tag)}!"))
        return ended


def make_batcher(log: list, runs: bool = True, fail_on: Any = None, **kwargs: Any) -> ContinuousBatcher:
    whole_calls: list[tuple[Any, list[Any]]] = []

    def decode(key: Any, sentences: list[Any]) -> list[str]:
        whole_calls.append((key, list(sentences)))
        return [f"{s}." for s in sentences]

    batcher = ContinuousBatcher(lambda key, sentences: runs, lambda key: CountdownBatch(log, fail_on), decode, **kwargs)
    batcher.whole_calls = whole_calls  # type: ignore[attr-defined]
    return batcher


def test_a_short_job_joins_a_running_one_and_leaves_first():
    log: list[list[Any]] = []
    batcher = make_batcher(log, max_batch_sentences=8)
    batcher.start()
    long = batcher.submit("greedy", ["60"])
    while not log:  # the long sentence is being decoded
        time.sleep(0.001)
    short = batcher.submit("greedy", ["3", "2"])
    assert short.result(timeout=10) == ["3!", "2!"]  # in the job's order, though "2" ended first
    assert not long.done()  # it did not wait for the long one
    assert long.result(timeout=10) == ["60!"]
    batcher.close()
    joined = next(k for k, members in enumerate(log) if "3" in members)
    assert joined > 0 and log[joined] == ["2", "3", "60"]  # joined between steps, beside the running sentence
    stats = batcher.stats()
    assert (stats.requests, stats.sentences, stats.queued_sentences) == (2, 3, 0)
    assert stats.largest_batch == 3 and stats.steps == len(log)


def test_lines_join_a_running_batch_in_groups_or_after_max_wait():
    log: list[list[Any]] = []
    batcher = make_batcher(log, max_batch_sentences=8, max_wait_ms=150)  # groups of 8 // 4 = 2 join at once
    batcher.start()
    long = batcher.submit("greedy", ["400"])
    while not log:
        time.sleep(0.001)
    alone = batcher.submit("greedy", ["1"])
    submitted, joined_at = len(log), None
    while joined_at is None:
        joined_at = next((k for k, members in enumerate(log) if "1" in members), None)
        time.sleep(0.001)
    assert joined_at - submitted >= 20  # waited ~150 ms (2 ms a step) for company, though there was room
    assert alone.result(timeout=10) == ["1!"]
    submitted = len(log)
    pair = batcher.submit("greedy", ["2", "2"])  # a group: joins at the next step
    assert pair.result(timeout=10) == ["2!", "2!"]
    assert next(k for k, members in enumerate(log) if "2" in members) - submitted <= 3
    assert long.result(timeout=20) == ["400!"]
    batcher.close()


def test_the_batch_never_holds_more_than_max_batch_sentences():
    log: list[list[Any]] = []
    batcher = make_batcher(log, max_batch_sentences=4)
    batcher.start()
    futures = [batcher.submit("greedy", [str(2 + i % 5)] * 3) for i in range(10)]
    assert [f.result(timeout=10) for f in futures] == [[f"{2 + i % 5}!"] * 3 for i in range(10)]
    batcher.close()
    assert max(len(members) for members in log) == 4  # a job is split across steps to fill the batch


def test_another_setting_waits_only_until_the_running_batch_is_empty():
    log: list[list[Any]] = []
    batcher = make_batcher(log, max_batch_sentences=8)
    batcher.start()
    first = batcher.submit("greedy", ["20"])
    while not log:
        time.sleep(0.001)
    other = batcher.submit("beam", ["5"])
    later = batcher.submit("greedy", ["4"])  # same setting as the running batch, but after the beam job
    done: dict[str, float] = {}
    for name, future in (("first", first), ("other", other), ("later", later)):
        future.add_done_callback(lambda f, name=name: done.setdefault(name, time.monotonic()))
    assert [f.result(timeout=10) for f in (first, other, later)] == [["20!"], ["5!"], ["4!"]]
    batcher.close()
    assert done["first"] <= done["other"] <= done["later"]
    assert all(not ("5" in members and ("20" in members or "4" in members)) for members in log)  # never mixed


def test_jobs_that_cannot_run_are_decoded_whole_together():
    log: list[list[Any]] = []
    batcher = make_batcher(log, runs=False, max_batch_sentences=8, max_wait_ms=200)
    futures = [batcher.submit("sampling", [str(i)]) for i in range(3)]
    batcher.start()
    assert [f.result(timeout=10) for f in futures] == [["0."], ["1."], ["2."]]
    batcher.close()
    assert batcher.whole_calls == [("sampling", ["0", "1", "2"])] and log == []  # type: ignore[attr-defined]


def test_cancelled_whole_jobs_leave_the_worker_alive():
    log: list[list[Any]] = []
    batcher = make_batcher(log, runs=False, max_wait_ms=0)
    cancelled = [batcher.submit("sampling", ["1"]) for _ in range(2)]
    assert all(future.cancel() for future in cancelled)
    batcher.start()
    assert batcher.submit("sampling", ["2"]).result(timeout=10) == ["2."]
    batcher.close()


def test_a_failing_step_fails_its_jobs_and_the_worker_goes_on():
    log: list[list[Any]] = []
    batcher = make_batcher(log, fail_on="7")
    batcher.start()
    failed = batcher.submit("greedy", ["7"])
    with pytest.raises(RuntimeError, match="boom"):
        failed.result(timeout=10)
    assert batcher.submit("greedy", ["2"]).result(timeout=10) == ["2!"]
    batcher.close()


def test_a_full_queue_refuses_and_a_cancelled_job_is_skipped():
    log: list[list[Any]] = []
    batcher = make_batcher(log, max_queued_sentences=3)
    batcher.submit("greedy", ["1", "1"])
    with pytest.raises(QueueFull):
        batcher.submit("greedy", ["1", "1"])
    cancelled = batcher.submit("greedy", ["1"])
    assert cancelled.cancel()
    batcher.start()
    kept = batcher.submit("greedy", ["2"])
    assert kept.result(timeout=10) == ["2!"]
    batcher.close()
    assert batcher.stats().requests == 2 and batcher.stats().queued_sentences == 0


def test_close_finishes_what_is_queued():
    log: list[list[Any]] = []
    batcher = make_batcher(log)
    futures: list[Future] = [batcher.submit("greedy", [str(n)]) for n in (3, 1, 2)]
    thread = threading.Thread(target=batcher.start)
    thread.start()
    thread.join()
    batcher.close()
    assert [f.result(timeout=1) for f in futures] == [["3!"], ["1!"], ["2!"]]
