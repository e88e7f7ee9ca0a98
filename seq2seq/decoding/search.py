"""Greedy search, sampling and beam search over one shared step function.

Both searches take `step(prev_tokens, state) -> (log_probs, state)`; the model provides that step
(`seq2seq.decoding.model_search.model_step`, around `Seq2Seq.decode_step`), and a test can provide a
hand-made one. The state
answers two calls: `index_select(rows)` keeps only some rows (a sentence that is done leaves the
batch, so no time is spent on it), and `reorder(rows)` moves rows within each sentence's beam
(beam search only; whatever a sentence's beams share, like the encoder memory, can stay put).
Greedy is the beam of one: `beam_search(beam_size=1)` returns exactly what `greedy_search` does.
Sampling is greedy search that draws each token instead of taking the most probable one: one loop,
`one_token_at_a_time`, serves both, with `most_probable` or a `seq2seq.decoding.sampling.Sampler`'s pick.
Forced decoding (`forced_decode`, for scoring and attention) runs the same step on given outputs, and
constrained beam search (`seq2seq.decoding.steering`) too. Decoding a batch with a model (`translate_batch`)
is `seq2seq.decoding.model_search`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from seq2seq.vocab import BOS_ID, EOS_ID

S = TypeVar("S")
StepFn = Callable[[Tensor, S], tuple[Tensor, S]]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    log_prob: float  # sum of the token log-probabilities (EOS included when it was produced)
    score: float  # log_prob / length penalty: what beam search ranks by
    attention: Tensor | None = None  # greedy with keep_attention: (output steps, EOS included, src_len) on the CPU


@dataclass
class ForcedScore:
    """How probable the model finds a given output (forced decoding): `forced_decode`, `score_batch`."""

    token_log_probs: list[float]  # one per output token, the final EOS last
    attention: Tensor | None = None  # with keep_attention: (output tokens + EOS, src_len) on the CPU

    @property
    def log_prob(self) -> float:
        """The total log-probability of the output, EOS included."""
        return sum(self.token_log_probs)

    @property
    def length(self) -> int:
        """Output tokens, EOS included."""
        return len(self.token_log_probs)

    @property
    def average(self) -> float:
        """The log-probability per token (EOS counted)."""
        return self.log_prob / self.length


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


# pick(log_probs (live, vocab), live (live,): their rows, positions (live,): their output positions)
#   -> (column (live,), log-prob (live,))
PickFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def most_probable(log_probs: Tensor, live: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy search's pick: the most probable column of each row, and its log-probability."""
    best, column = log_probs.max(dim=1)
    return column, best


@torch.no_grad()
def greedy_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """Pick the most probable token at every step. max_lengths: (batch,) output tokens allowed.

    With `keep_attention`, the state after each step must hold that step's attention weights in
    `state.attention` (live rows, src_len), and every hypothesis keeps its rows.
    """
    return one_token_at_a_time(step, state, max_lengths, most_probable, bos, eos, keep_attention)


def one_token_at_a_time(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    pick: PickFn,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """One output per row, each step's token chosen by `pick` (greedy: `most_probable`; sampling: a draw).
    A row leaves the batch at its EOS or its max length. max_lengths: (rows,)."""
    run = RunningGreedy(step, pick, bos, eos, keep_attention)
    run.add(state, max_lengths)
    hypotheses: list[Hypothesis] = [Hypothesis([], 0.0, 0.0)] * max_lengths.size(0)
    while len(run):
        for row, hyp in run.advance():
            hypotheses[row] = hyp
    return hypotheses


class RunningGreedy:
    """Greedy search (or sampling) over a running batch: rows join between steps (`add`) and leave as soon as
    they end (`advance` hands them over), so a server can keep one batch going (continuous batching).

    A row is numbered by the order it was added (0, 1, ...): `pick` sees these numbers and each row's output
    position, so a row's output never depends on the rows beside it. Adding rows needs a state that can
    `cat` another one behind its rows (`model_search.ModelState`).
    """

    def __init__(
        self,
        step: StepFn,
        pick: PickFn = most_probable,
        bos: int = BOS_ID,
        eos: int = EOS_ID,
        keep_attention: bool = False,
    ) -> None:
        self.step, self.pick, self.bos, self.eos, self.keep_attention = step, pick, bos, eos, keep_attention
        self.state: Any = None
        self.added = 0  # rows added so far: the next row's number

    def __len__(self) -> int:
        return 0 if self.state is None else int(self.rows.numel())

    def add(self, state: Any, max_lengths: Tensor) -> range:
        """Rows that join: their state and max output lengths (rows,). Returns their numbers."""
        n, device = max_lengths.size(0), max_lengths.device
        numbers = range(self.added, self.added + n)
        self.added += n
        rows = torch.arange(numbers.start, numbers.stop, device=device)
        width = self.tokens.size(1) if self.state is not None else 0
        tokens = torch.full((n, width), self.eos, dtype=torch.long, device=device)  # (n, width)
        log_probs = torch.zeros(n, width, device=device)
        prev = torch.full((n,), self.bos, dtype=torch.long, device=device)
        if self.state is None:
            self.state, self.rows, self.limits, self.positions = state, rows, max_lengths, torch.zeros_like(rows)
            self.prev, self.tokens, self.log_probs, self.attention = prev, tokens, log_probs, None
            return numbers
        self.state = self.state.cat(state)
        self.rows, self.limits = torch.cat([self.rows, rows]), torch.cat([self.limits, max_lengths])
        self.positions = torch.cat([self.positions, torch.zeros_like(rows)])
        self.prev = torch.cat([self.prev, prev])
        self.tokens, self.log_probs = torch.cat([self.tokens, tokens]), torch.cat([self.log_probs, log_probs])
        if self.attention is not None:  # (rows, width, src_len): the new rows attended to nothing yet
            self.attention = torch.cat([self.attention, self.attention.new_zeros(n, *self.attention.shape[1:])])
        return numbers

    def advance(self) -> list[tuple[int, Hypothesis]]:
        """One step for every row; the rows that ended (EOS or max length) leave: (number, hypothesis) each.

        Each row's outputs are the last `positions` columns of `tokens` (rows, width), EOS before them."""
        step_log_probs, self.state = self.step(self.prev, self.state)  # (rows, vocab), or (rows, C): a shortlist
        column, best = self.pick(step_log_probs, self.rows, self.positions)
        self.prev = token_ids(self.state, column)
        self.tokens = torch.cat([self.tokens, self.prev.unsqueeze(1)], dim=1)
        self.log_probs = torch.cat([self.log_probs, best.unsqueeze(1)], dim=1)
        if self.keep_attention:
            self.attention = _append_attention(self.attention, self.state, self.tokens.size(1))
        self.positions = self.positions + 1
        finished = (self.prev == self.eos) | (self.positions >= self.limits)
        if not bool(finished.any()):
            return []
        done = finished.nonzero().squeeze(1)
        ended = self._hypotheses(done)
        if done.numel() == finished.numel():
            self.state = None
            return ended
        keep = (~finished).nonzero().squeeze(1)
        width = int(self.positions.index_select(0, keep).max())  # the columns the rows left still need
        self.state = self.state.index_select(keep)
        self.rows, self.limits, self.positions = self.rows[keep], self.limits[keep], self.positions[keep]
        self.prev = self.prev[keep]
        self.tokens, self.log_probs = self.tokens[keep, -width:], self.log_probs[keep, -width:]
        if self.attention is not None:
            self.attention = self.attention[keep, -width:]
        return ended

    def _hypotheses(self, done: Tensor) -> list[tuple[int, Hypothesis]]:
        """The rows `done` as hypotheses: their outputs up to EOS (not kept) and the summed log-probabilities."""
        ended = []
        lengths = self.positions.index_select(0, done).tolist()
        tokens, log_probs = self.tokens.index_select(0, done).tolist(), self.log_probs.index_select(0, done).tolist()
        weights = self.attention.index_select(0, done).cpu() if self.attention is not None else [None] * len(lengths)
        for number, length, row, row_log_probs, w in zip(self.rows[done].tolist(), lengths, tokens, log_probs, weights):
            total = sum(row_log_probs[-length:])  # the row ends at EOS or at its max length: either way, here
            outputs = [t for t in row[-length:] if t != self.eos]
            ended.append((number, Hypothesis(outputs, total, total, None if w is None else w[-length:])))
        return ended


def _append_attention(kept: Tensor | None, state: Any, width: int) -> Tensor:
    """`kept` (rows, width - 1, src_len) with this step's weights (`state.attention`, (rows, src_len)) behind."""
    if state.attention is None:
        raise ValueError("no attention weights to keep: the model has none (model.attention=none)")
    weights = state.attention.float().unsqueeze(1)  # (rows, 1, src_len)
    if kept is None:
        return torch.cat([weights.new_zeros(weights.size(0), width - 1, weights.size(2)), weights], dim=1)
    if kept.size(2) < weights.size(2):  # rows joined with longer sources: the memory was padded
        kept = torch.nn.functional.pad(kept, (0, weights.size(2) - kept.size(2)))
    return torch.cat([kept, weights], dim=1)


def token_ids(state: Any, columns: Tensor) -> Tensor:
    """The target ids of columns of a step's log-probabilities: themselves, or with a shortlist (the state's
    `vocab`, (sentences, C): every live sentence's candidate ids) the ids they stand for.

    columns: (sentences, ...), one row per live sentence (greedy: (sentences,); beam: (sentences, 2*beam)).
    """
    vocab = getattr(state, "vocab", None)
    if vocab is None:
        return columns
    return vocab.gather(1, columns.reshape(vocab.size(0), -1)).view_as(columns)


def _keep_step_attention(kept: Tensor | None, state: Any, live: Tensor, t: int, batch: int, steps: int) -> Tensor:
    """Store step t's attention weights (`state.attention`, (live, src_len)) in `kept` (batch, steps, src_len)."""
    if state.attention is None:
        raise ValueError("no attention weights to keep: the model has none (model.attention=none)")
    if kept is None:
        kept = state.attention.new_zeros(batch, steps, state.attention.size(1)).float()
    kept[live, t] = state.attention.float()
    return kept


def _drop_finished(finished: Tensor, live: Tensor, limits: Tensor, prev: Tensor, state: Any) -> tuple[Any, ...]:
    """The rows that are done leave the batch (greedy and forced decoding): (live, limits, prev, state) of the rest."""
    keep = (~finished).nonzero().squeeze(1)
    return live[keep], limits[keep], prev[keep], state.index_select(keep)


@torch.no_grad()
def beam_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    beam_size: int,
    alpha: float = 0.0,
    nbest: int = 1,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    coverage_penalty: float = 0.0,
    src_lengths: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the `nbest` best hypotheses per sentence, best first.

    `state` must already hold `beam_size` rows per sentence (sentence-major: rows
    b*K .. b*K+K-1 belong to sentence b). A hypothesis ends when it emits EOS or
    reaches its sentence's max length; a sentence is done once `beam_size`
    hypotheses have ended, and they are ranked by log-probability / length penalty.
    With `coverage_penalty` beta > 0 (GNMT, Wu et al. 2016) they are ranked by that plus
    beta * sum_i log(min(attention source word i received, 1)): a hypothesis that left source words
    unattended ranks lower. It needs the step's attention (`state.attention`, (rows, src_len)) and the
    sentences' `src_lengths` (batch,) (EOS included).
    """
    run = RunningBeams(step, beam_size, alpha, nbest, bos, eos, coverage_penalty)
    run.add(state, max_lengths, src_lengths)
    hypotheses: list[list[Hypothesis]] = [[] for _ in range(max_lengths.size(0))]
    while len(run):
        for sentence, hyps in run.advance():
            hypotheses[sentence] = hyps
    return hypotheses


class RunningBeams:
    """Beam search over a running batch: sentences join between steps (`add`) and leave, with their `nbest`
    hypotheses, as soon as they are done (`advance`), so a server can keep one batch going (continuous
    batching). `beam_search` is one batch added once.

    Sentences are numbered by the order they were added (0, 1, ...). Every sentence keeps its own step count,
    so its hypotheses never depend on the sentences beside it. Adding sentences needs a state that can `cat`
    another one behind its rows (`model_search.ModelState`).
    """

    def __init__(
        self,
        step: StepFn,
        beam_size: int,
        alpha: float = 0.0,
        nbest: int = 1,
        bos: int = BOS_ID,
        eos: int = EOS_ID,
        coverage_penalty: float = 0.0,
    ) -> None:
        self.step, self.k, self.alpha, self.nbest, self.bos, self.eos = step, beam_size, alpha, nbest, bos, eos
        self.state: Any = None
        self.live: list[int] = []  # the sentences being decoded, in row order (beam_size rows each)
        self.limits: list[int] = []  # per live sentence: its max output length
        self.ages: list[int] = []  # per live sentence: the tokens its hypotheses hold
        self.ended: dict[int, list[Hypothesis]] = {}  # per live sentence: its ended hypotheses
        self.coverage: Tensor | None = None  # (live*beam, src_len) attention received so far (coverage penalty)
        self.penalty = _CoveragePenalty(coverage_penalty) if coverage_penalty > 0 else None
        self.added = 0

    def __len__(self) -> int:
        return len(self.live)

    def add(self, state: Any, max_lengths: Tensor, src_lengths: Tensor | None = None) -> range:
        """Sentences that join: `state` holds `beam_size` rows per sentence (sentence-major: rows b*K .. b*K+K-1
        belong to sentence b), max_lengths (sentences,) their max output lengths, src_lengths (sentences,) their
        source lengths with EOS (for a coverage penalty). Returns their numbers."""
        n, k, device = max_lengths.size(0), self.k, max_lengths.device
        numbers = range(self.added, self.added + n)
        self.added += n
        scores = torch.zeros(n, k, device=device)  # (n, beam) summed log-probs of the live hypotheses
        scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand
        width = self.history.size(1) if self.live else 1
        history = torch.full((n * k, width), self.bos, dtype=torch.long, device=device)  # BOS before the outputs
        if self.penalty is not None:
            self.penalty.add_sentences(numbers, src_lengths)
        if not self.live:
            self.state, self.scores, self.history, self.coverage = state, scores, history, None
        else:
            self.state = self.state.cat(state)
            self.scores, self.history = torch.cat([self.scores, scores]), torch.cat([self.history, history])
            if self.coverage is not None:  # the new rows received nothing yet
                self.coverage = self.penalty.extend(self.coverage, n * k)  # type: ignore[union-attr]
        self.live += numbers
        self.limits += max_lengths.tolist()
        self.ages += [0] * n
        self.ended.update((number, []) for number in numbers)
        return numbers

    def advance(self) -> list[tuple[int, list[Hypothesis]]]:
        """One step for every sentence; those done leave with their `nbest` best hypotheses, best first.

        A hypothesis ends when it emits EOS or reaches its sentence's max length; a sentence is done once
        `beam_size` hypotheses have ended, and they are ranked by log-probability / length penalty (plus the
        coverage penalty, if any). A row's outputs are the last `ages` columns of `history`, BOS before them.
        """
        n, k, penalty, width = len(self.live), self.k, self.penalty, self.history.size(1)
        device = self.history.device
        log_probs, state = self.step(self.history[:, -1], self.state)  # (live*beam, vocab), or (live*beam, C)
        if penalty is not None:
            self.coverage = penalty.add(self.coverage, state)
        vocab = log_probs.size(1)
        candidates = self.scores.unsqueeze(2) + log_probs.view(n, k, vocab)  # (live, beam, vocab)
        top_scores, top_index = candidates.view(n, -1).topk(2 * k, dim=1)  # (live, 2*beam)
        top_beam, top_token = top_index // vocab, token_ids(state, top_index % vocab)
        # Candidates ending in EOS among the best k end their hypothesis.
        is_eos = top_token == self.eos
        for i, j in is_eos[:, :k].nonzero().tolist():
            row, sentence = i * k + int(top_beam[i, j]), self.live[i]
            bonus = penalty.score(self.coverage, row, sentence) if penalty is not None else 0.0
            tokens = self.history[row, width - self.ages[i] :].tolist()
            _finish(self.ended[sentence], tokens, float(top_scores[i, j]), self.alpha, True, bonus)
        # The best k candidates that do not end in EOS live on (there are always k: at most one EOS per beam).
        alive = torch.argsort(is_eos.to(torch.int8), dim=1, stable=True)[:, :k]  # (live, beam) positions
        scores = top_scores.gather(1, alive)
        offsets = torch.arange(n, device=device).unsqueeze(1) * k  # (live, 1) each sentence's first row
        beams = (offsets + top_beam.gather(1, alive)).view(-1)  # rows to continue from
        history = torch.cat([self.history.index_select(0, beams), top_token.gather(1, alive).view(-1, 1)], dim=1)
        coverage = self.coverage.index_select(0, beams) if self.coverage is not None else None
        going_on, done = [], []
        for i, sentence in enumerate(self.live):
            self.ages[i] += 1
            if self.ages[i] >= self.limits[i]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    bonus = penalty.score(coverage, i * k + j, sentence) if penalty is not None else 0.0
                    tokens = history[i * k + j, width - self.ages[i] + 1 :].tolist()
                    _finish(self.ended[sentence], tokens, float(scores[i, j]), self.alpha, False, bonus)
            if self.ages[i] < self.limits[i] and len(self.ended[sentence]) < k:
                going_on.append(i)
            else:
                hyps = self.ended.pop(sentence)
                done.append((sentence, sorted(hyps, key=lambda h: h.score, reverse=True)[: self.nbest]))
                if penalty is not None:
                    penalty.forget(sentence)
        if not going_on:
            self.live, self.limits, self.ages, self.state = [], [], [], None
            return done
        if len(going_on) == n:
            self.state = state.reorder(beams)
        else:  # done sentences leave the batch: one selection both reorders and drops rows
            keep = torch.tensor(going_on, device=device)
            rows = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            self.state = state.index_select(beams.index_select(0, rows))
            history, scores = history.index_select(0, rows), scores.index_select(0, keep)
            if coverage is not None:
                coverage = coverage.index_select(0, rows)
            self.live = [self.live[i] for i in going_on]
            self.limits = [self.limits[i] for i in going_on]
            self.ages = [self.ages[i] for i in going_on]
        self.history = history[:, -(max(self.ages) + 1) :]  # the oldest sentence's outputs and one BOS
        self.scores, self.coverage = scores, coverage
        return done


class _CoveragePenalty:
    """GNMT's coverage penalty: beta * sum over source words of log(min(attention received, 1))."""

    FLOOR = 1e-6  # a source word never attended to counts as log(1e-6), not minus infinity

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.src_lengths: dict[int, int] = {}  # per live sentence: its source length, EOS included

    def add_sentences(self, numbers: range, src_lengths: Tensor | None) -> None:
        if src_lengths is None:
            raise ValueError("a coverage penalty needs the source lengths")
        self.src_lengths.update(zip(numbers, src_lengths.tolist()))

    def forget(self, sentence: int) -> None:
        del self.src_lengths[sentence]

    @staticmethod
    def extend(coverage: Tensor, rows: int) -> Tensor:
        """`coverage` with `rows` more rows that received nothing yet."""
        return torch.cat([coverage, coverage.new_zeros(rows, coverage.size(1))])

    def add(self, coverage: Tensor | None, state: Any) -> Tensor:
        """The coverage of every row after this step: (rows, src_len)."""
        if getattr(state, "attention", None) is None:
            raise ValueError("decode.coverage_penalty needs a model with attention (model.attention is none)")
        attention = state.attention.float()
        if coverage is None:
            return attention
        if coverage.size(1) < attention.size(1):  # sentences with longer sources joined: the memory was padded
            coverage = torch.nn.functional.pad(coverage, (0, attention.size(1) - coverage.size(1)))
        return coverage + attention

    def score(self, coverage: Tensor | None, row: int, sentence: int) -> float:
        assert coverage is not None
        received = coverage[row, : self.src_lengths[sentence]].clamp(min=self.FLOOR, max=1.0)
        return self.beta * float(received.log().sum())


def _finish(
    ended: list[Hypothesis], tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0
) -> None:
    if log_prob != float("-inf"):
        ended.append(scored(tokens, log_prob, alpha, eos_counted, bonus))


def scored(tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0) -> Hypothesis:
    """An ended hypothesis, ranked by log-probability / length penalty (EOS counted in the length if written),
    plus `bonus` (a coverage penalty: 0 or less)."""
    length = len(tokens) + (1 if eos_counted else 0)
    return Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha) + bonus)


@torch.no_grad()
def forced_decode(
    step: StepFn,
    state: Any,
    targets: Tensor,
    lengths: Tensor,
    bos: int = BOS_ID,
    keep_attention: bool = False,
) -> list[ForcedScore]:
    """Score given outputs: the search's step, fed the target tokens instead of its own choices.

    targets: (batch, steps) each row y1 .. yn EOS, anything after it; lengths: (batch,) n + 1.
    Returns per row the log-probability of each target token (EOS included), summed in the same order
    as `greedy_search`, so scoring a search's own output gives back its `log_prob`. A row that is done
    leaves the batch, as in the searches. `keep_attention` as in `greedy_search`.
    """
    batch, steps = targets.shape
    token_log_probs = torch.zeros(batch, steps, device=targets.device)  # (batch, steps)
    attention: Tensor | None = None  # (batch, steps, src_len) when kept
    live = torch.arange(batch, device=targets.device)  # the rows still being scored
    limits = lengths.to(targets.device)
    prev = torch.full((batch,), bos, dtype=torch.long, device=targets.device)
    for t in range(int(lengths.max())):
        step_log_probs, state = step(prev, state)  # (live, vocab)
        prev = targets[live, t]  # (live,) the given token, not the argmax
        token_log_probs[live, t] = step_log_probs.gather(1, prev.unsqueeze(1)).squeeze(1)
        if keep_attention:
            attention = _keep_step_attention(attention, state, live, t, batch, steps)
        finished = limits <= t + 1
        if bool(finished.any()):
            if bool(finished.all()):
                break
            live, limits, prev, state = _drop_finished(finished, live, limits, prev, state)
    rows = token_log_probs.tolist()
    weights = attention.cpu() if attention is not None else [None] * batch
    return [ForcedScore(row[:n], None if w is None else w[:n]) for row, n, w in zip(rows, lengths.tolist(), weights)]
