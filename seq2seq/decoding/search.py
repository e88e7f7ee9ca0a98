"""Greedy search, sampling and beam search over one shared step function.

Both searches take `step(prev_tokens, state) -> (log_probs, state)`; the model provides that step
(`model_step`, around `Seq2Seq.decode_step`), and a test can provide a hand-made one. The state
answers two calls: `index_select(rows)` keeps only some rows (a sentence that is done leaves the
batch, so no time is spent on it), and `reorder(rows)` moves rows within each sentence's beam
(beam search only; whatever a sentence's beams share, like the encoder memory, can stay put).
Greedy is the beam of one: `beam_search(beam_size=1)` returns exactly what `greedy_search` does.
Sampling is greedy search that draws each token instead of taking the most probable one: one loop,
`one_token_at_a_time`, serves both, with `most_probable` or a `seq2seq.decoding.sampling.Sampler`'s pick.
Forced decoding (`forced_decode`, for scoring and attention) runs the same step on given outputs.
The model may be one `Seq2Seq` or an `Ensemble` (`seq2seq.decoding.ensemble`): both offer `encode` and `decode_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.data.batches import Batch
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.decoding.sampling import Sampler, sample_streams
from seq2seq.decoding.steering import Progress, SentenceConstraints, Steering, allocate_beam
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.model.decoder import DecoderState, Memory

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


# pick(log_probs (live, vocab), live (live,): their rows, output position) -> (column (live,), log-prob (live,))
PickFn = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]


def most_probable(log_probs: Tensor, live: Tensor, position: int) -> tuple[Tensor, Tensor]:
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
    batch, steps, device = max_lengths.size(0), int(max_lengths.max()), max_lengths.device
    tokens = torch.full((batch, steps), eos, dtype=torch.long, device=device)  # (batch, steps)
    log_probs = torch.zeros(batch, steps, device=device)  # (batch, steps)
    attention: Tensor | None = None  # (batch, steps, src_len) when kept
    live = torch.arange(batch, device=device)  # the sentences still being decoded
    limits = max_lengths
    prev = torch.full((batch,), bos, dtype=torch.long, device=device)
    for t in range(steps):
        step_log_probs, state = step(prev, state)  # (live, vocab), or (live, C) with a shortlist
        column, best = pick(step_log_probs, live, t)
        prev = token_ids(state, column)
        tokens[live, t], log_probs[live, t] = prev, best
        if keep_attention:
            attention = _keep_step_attention(attention, state, live, t, batch, steps)
        finished = (prev == eos) | (t + 1 >= limits)
        if bool(finished.any()):
            if bool(finished.all()):
                break
            live, limits, prev, state = _drop_finished(finished, live, limits, prev, state)
    rows, row_log_probs = tokens[:, : t + 1].tolist(), log_probs[:, : t + 1].tolist()
    weights = attention.cpu() if attention is not None else [None] * batch
    return [
        _cut(row, lp, limit, eos, w) for row, lp, limit, w in zip(rows, row_log_probs, max_lengths.tolist(), weights)
    ]


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


def _cut(row: list[int], log_probs: list[float], limit: int, eos: int, attention: Tensor | None) -> Hypothesis:
    """A greedy row up to its EOS or its sentence's max length, whichever comes first."""
    end = min(row.index(eos) + 1 if eos in row else len(row), limit)
    total = sum(log_probs[:end])
    return Hypothesis([t for t in row[:end] if t != eos], total, total, None if attention is None else attention[:end])


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
    batch, k = max_lengths.size(0), beam_size
    device = max_lengths.device
    scores = torch.zeros(batch, k, device=device)  # (live, beam) summed log-probs of the live hypotheses
    scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand
    history = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)  # (live*beam, t+1)
    beam_rows = torch.arange(k, device=device)
    live = list(range(batch))  # the sentences still being decoded, in row order
    ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
    limits = max_lengths.tolist()
    coverage: Tensor | None = None  # (live*beam, src_len) attention received so far, with a coverage penalty
    penalty = _CoveragePenalty(coverage_penalty, src_lengths, k) if coverage_penalty > 0 else None
    for t in range(int(max_lengths.max())):
        n = len(live)
        log_probs, state = step(history[:, -1], state)  # (live*beam, vocab), or (live*beam, C) with a shortlist
        if penalty is not None:
            coverage = penalty.add(coverage, state)
        vocab = log_probs.size(1)
        candidates = scores.unsqueeze(2) + log_probs.view(n, k, vocab)  # (live, beam, vocab)
        top_scores, top_index = candidates.view(n, -1).topk(2 * k, dim=1)  # (live, 2*beam)
        top_beam, top_token = top_index // vocab, token_ids(state, top_index % vocab)
        # Candidates ending in EOS among the best k end their hypothesis.
        is_eos = top_token == eos
        for i, j in is_eos[:, :k].nonzero().tolist():
            row = i * k + int(top_beam[i, j])
            bonus = penalty.score(coverage, row, live[i]) if penalty is not None else 0.0
            _finish(ended[live[i]], history[row, 1:].tolist(), float(top_scores[i, j]), alpha, True, bonus)
        # The best k candidates that do not end in EOS live on (there are always k: at most one EOS per beam).
        alive = torch.argsort(is_eos.to(torch.int8), dim=1, stable=True)[:, :k]  # (live, beam) positions
        scores = top_scores.gather(1, alive)
        offsets = torch.arange(n, device=device).unsqueeze(1) * k  # (live, 1) each sentence's first row
        beams = (offsets + top_beam.gather(1, alive)).view(-1)  # rows to continue from
        history = torch.cat([history.index_select(0, beams), top_token.gather(1, alive).view(-1, 1)], dim=1)
        if coverage is not None:
            coverage = coverage.index_select(0, beams)
        going_on = []
        for i, b in enumerate(live):
            if t + 1 >= limits[b]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    bonus = penalty.score(coverage, i * k + j, b) if penalty is not None else 0.0
                    row = history[i * k + j, 1:].tolist()
                    _finish(ended[b], row, float(scores[i, j]), alpha, False, bonus)
            elif len(ended[b]) < k:
                going_on.append(i)
        if not going_on:
            break
        if len(going_on) == n:
            state = state.reorder(beams)
        else:  # done sentences leave the batch: one selection both reorders and drops rows
            keep = torch.tensor(going_on, device=device)
            rows = (keep.unsqueeze(1) * k + beam_rows).view(-1)
            state = state.index_select(beams.index_select(0, rows))
            history, scores = history.index_select(0, rows), scores.index_select(0, keep)
            if coverage is not None:
                coverage = coverage.index_select(0, rows)
            live = [live[i] for i in going_on]
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in ended]


class _CoveragePenalty:
    """GNMT's coverage penalty: beta * sum over source words of log(min(attention received, 1))."""

    FLOOR = 1e-6  # a source word never attended to counts as log(1e-6), not minus infinity

    def __init__(self, beta: float, src_lengths: Tensor | None, beam_size: int) -> None:
        if src_lengths is None:
            raise ValueError("a coverage penalty needs the source lengths")
        self.beta, self.src_lengths, self.k = beta, src_lengths.tolist(), beam_size

    def add(self, coverage: Tensor | None, state: Any) -> Tensor:
        """The coverage of every row after this step: (rows, src_len)."""
        if getattr(state, "attention", None) is None:
            raise ValueError("decode.coverage_penalty needs a model with attention (model.attention is none)")
        attention = state.attention.float()
        return attention if coverage is None else coverage + attention

    def score(self, coverage: Tensor | None, row: int, sentence: int) -> float:
        assert coverage is not None
        received = coverage[row, : self.src_lengths[sentence]].clamp(min=self.FLOOR, max=1.0)
        return self.beta * float(received.log().sum())


@torch.no_grad()
def constrained_beam_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    beam_size: int,
    constraints: Sequence[SentenceConstraints],
    alpha: float = 0.0,
    nbest: int = 1,
    columns: Sequence[dict[int, int]] | None = None,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
) -> list[list[Hypothesis]]:
    """Beam search in which every sentence's outputs hold its phrases (`constraints`, one per sentence);
    `state` as for `search.beam_search` (`beam_size` rows per sentence, sentence-major). `columns`: with a
    shortlist, each sentence's target id -> its column of the step's log-probabilities. Returns the `nbest`
    best hypotheses per sentence, best first, those that meet every phrase before any that do not (which
    happens only when the max length cuts a sentence short)."""
    batch, k = max_lengths.size(0), beam_size
    device = max_lengths.device
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")
    history = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)  # (live*beam, t+1)
    progress = [[c.start() for _ in range(k)] for c in constraints]  # per live sentence, per beam
    word_pieces = torch.tensor(list(constraints[0].continues_word), dtype=torch.bool, device=device)  # (V,)
    live = list(range(batch))
    ended: list[list[tuple[bool, Hypothesis]]] = [[] for _ in range(batch)]  # (all phrases met, hypothesis)
    limits = max_lengths.tolist()
    beam_rows = torch.arange(k, device=device)
    for t in range(int(max_lengths.max())):
        n = len(live)
        log_probs, state = step(history[:, -1], state)  # (live*beam, V)
        vocab = log_probs.size(1)
        candidates = scores.unsqueeze(2) + log_probs.view(n, k, vocab)  # (live, beam, V)
        unmet = torch.tensor([[not p.all_met for p in beams] for beams in progress], device=device)  # (live, beam)
        if columns is None:  # EOS only once every phrase is met
            candidates[:, :, eos] = candidates[:, :, eos].masked_fill(unmet, float("-inf"))
        else:
            for i, b in enumerate(live):
                c = columns[b][eos]
                candidates[i, :, c] = candidates[i, :, c].masked_fill(unmet[i], float("-inf"))
        top_scores, top_index = candidates.view(n, -1).topk(k, dim=1)  # (live, beam)
        best_scores, best_column = candidates.max(dim=2)  # (live, beam) each hypothesis' best continuation
        # ... and its best that starts a new word (or ends): a phrase it has just completed stays met
        continues = word_pieces if getattr(state, "vocab", None) is None else word_pieces[state.vocab].unsqueeze(1)
        boundary_scores, boundary_column = candidates.masked_fill(continues, float("-inf")).max(dim=2)
        # the continuations that advance a phrase, gathered in one call: (sentence, beam, column) triples
        wanted = [
            (i, j, _column(columns, b, token))
            for i, b in enumerate(live)
            for j, p in enumerate(progress[i])
            for token in constraints[b].advancing(p)
        ]
        wanted = [(i, j, c) for i, j, c in wanted if c is not None]
        wanted_scores = (
            candidates[[w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]].tolist()
            if wanted
            else []
        )
        top_scores_l, top_index_l = top_scores.tolist(), top_index.tolist()
        best_scores_l, best_column_l = best_scores.tolist(), best_column.tolist()
        boundary_scores_l, boundary_column_l = boundary_scores.tolist(), boundary_column.tolist()
        ids = state.vocab.tolist() if getattr(state, "vocab", None) is not None else None  # (live, C) or None
        by_sentence: list[dict[tuple[int, int], float]] = [{} for _ in live]
        for i in range(n):
            for s, index in zip(top_scores_l[i], top_index_l[i]):
                by_sentence[i][(index // vocab, index % vocab)] = s
            for j in range(k):
                by_sentence[i][(j, best_column_l[i][j])] = best_scores_l[i][j]
                by_sentence[i][(j, boundary_column_l[i][j])] = boundary_scores_l[i][j]
        for (i, j, c), s in zip(wanted, wanted_scores):
            by_sentence[i][(j, c)] = s
        chosen_rows, chosen_columns, chosen_scores, chosen_progress = [], [], [], []
        going_on = []
        for i, b in enumerate(live):
            cons = constraints[b]
            banks: dict[int, list[tuple[float, int, int, Progress]]] = {}
            for (j, c), s in by_sentence[i].items():
                if s == float("-inf"):
                    continue
                token = c if ids is None else ids[i][c]
                if token == eos:  # every phrase met (EOS is masked otherwise): the hypothesis ends
                    final = cons.after(progress[i][j], token)
                    row = history[i * k + j, 1:].tolist()
                    ended[b].append((final.all_met, _scored(row, s, alpha, eos_counted=True)))
                    continue
                after = cons.after(progress[i][j], token)
                banks.setdefault(after.tokens_met(cons.lengths), []).append((s, j, c, after))
            picked = allocate_beam(banks, k)
            while len(picked) < k:  # fewer candidates than beams: empty rows that never win
                picked.append((float("-inf"), 0, 0, progress[i][0]))
            for s, j, c, after in picked:
                chosen_rows.append(i * k + j)
                chosen_columns.append(c)
                chosen_scores.append(s)
                chosen_progress.append(after)
        beams = torch.tensor(chosen_rows, device=device)
        column_t = torch.tensor(chosen_columns, device=device).view(n, k)
        tokens = token_ids(state, column_t)  # (live, beam)
        scores = torch.tensor(chosen_scores, device=device).view(n, k)
        history = torch.cat([history.index_select(0, beams), tokens.view(-1, 1)], dim=1)
        progress = [chosen_progress[i * k : (i + 1) * k] for i in range(n)]
        scores_l = scores.tolist()
        for i, b in enumerate(live):
            if t + 1 >= limits[b]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    if scores_l[i][j] != float("-inf"):
                        row = history[i * k + j, 1:].tolist()
                        hypothesis = _scored(row, scores_l[i][j], alpha, eos_counted=False)
                        ended[b].append((progress[i][j].all_met, hypothesis))
            elif sum(met for met, _ in ended[b]) < k:
                going_on.append(i)
        if not going_on:
            break
        if len(going_on) == n:
            state = state.reorder(beams)
        else:
            keep = torch.tensor(going_on, device=device)
            rows = (keep.unsqueeze(1) * k + beam_rows).view(-1)
            state = state.index_select(beams.index_select(0, rows))
            history, scores = history.index_select(0, rows), scores.index_select(0, keep)
            progress = [progress[i] for i in going_on]
            live = [live[i] for i in going_on]
    return [[h for _, h in sorted(hyps, key=lambda mh: (mh[0], mh[1].score), reverse=True)[:nbest]] for hyps in ended]


def _column(columns: Sequence[dict[int, int]] | None, sentence: int, token: int) -> int | None:
    """The column of `token` in a sentence's log-probabilities (None: not among its shortlist candidates)."""
    if columns is None:
        return token
    return columns[sentence].get(token)


def _finish(
    ended: list[Hypothesis], tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0
) -> None:
    if log_prob != float("-inf"):
        ended.append(_scored(tokens, log_prob, alpha, eos_counted, bonus))


def _scored(tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0) -> Hypothesis:
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


@dataclass
class ModelState:
    """The search rows of the model: their decoder states and the encoder memory they attend to.

    `sentence` (rows,) says which sentence each row decodes: its row of the memory (and of the shortlist's
    `vocab` and `output`, and of `prefix`). A beam's hypotheses share their sentence's memory row instead of
    copies of it; the rows of a sentence are contiguous and equally many (greedy: one; beam search: its
    beams). Without `sentence`, row i is sentence i. With a shortlist, every sentence decodes over its own
    candidate ids only (`vocab`, (sentences, C)), with the output layer cut to them once per batch (`output`,
    from the model's `output_rows`). With `prefix`, every sentence's first outputs are forced to its prefix
    (`position` counts the steps taken).
    """

    decoder: DecoderState
    memory: Memory
    attention: Tensor | None = None  # (rows, src_len) the last step's attention weights (None without attention)
    vocab: Tensor | None = None  # (sentences, C) candidate target ids, or None: the whole vocabulary
    output: Any = None  # the output layer(s) cut to `vocab` (one `OutputRows`, or a list: an ensemble's)
    sentence: Tensor | None = None  # (rows,) each row's sentence, numbered 0, 1, ... in row order
    prefix: Tensor | None = None  # (sentences, P) forced output ids, -1 after a sentence's prefix
    position: int = 0  # output steps taken: the prefix column the next step is forced to

    def index_select(self, rows: Tensor) -> ModelState:
        """Keep `rows` (sentence by sentence, in order); the sentences left without rows leave the memory."""
        decoder = self.decoder.index_select(rows)
        if self.sentence is None:
            return ModelState(decoder, self.memory.index_select(rows), position=self.position)
        sentences = int(self.sentence[-1]) + 1
        kept, sentence = torch.unique_consecutive(self.sentence[rows], return_inverse=True)  # (sentences left,)
        memory, vocab, output, prefix = self.memory, self.vocab, self.output, self.prefix
        if kept.numel() < sentences:
            memory = memory.index_select(kept)
            if vocab is not None:
                vocab = vocab.index_select(0, kept)
                output = [o.sentences(kept) for o in output] if isinstance(output, list) else output.sentences(kept)
            if prefix is not None:
                prefix = prefix.index_select(0, kept)
        return ModelState(decoder, memory, None, vocab, output, sentence, prefix, self.position)

    def reorder(self, rows: Tensor) -> ModelState:
        """Rows within each sentence's beam: their sentences, memory and candidates stay."""
        return replace(self, decoder=self.decoder.index_select(rows), attention=None)

    def forced_columns(self, rows: int) -> Tensor | None:
        """The column each row's next step is forced to (-1: free), (rows,); None when no row is forced."""
        if self.prefix is None or self.position >= self.prefix.size(1):
            return None
        sentence = self.sentence if self.sentence is not None else torch.arange(rows, device=self.prefix.device)
        forced = self.prefix[sentence, self.position]  # (rows,) target ids, -1 where free
        if self.vocab is None:
            return forced
        vocab = self.vocab[sentence]  # (rows, C): the ids of each row's columns
        column = (vocab == forced.unsqueeze(1)).to(torch.int8).argmax(dim=1)
        return torch.where(forced >= 0, column, forced)


def model_step(model: Any) -> StepFn:
    """The search step of a `Seq2Seq`: prev (rows,), ModelState -> log-probs (rows, vocab or C), ModelState.

    Rows whose sentence has a prefix not yet written (`ModelState.prefix`) can only take its next token: every
    other column's log-probability is -inf (the forced token keeps the model's own log-probability)."""

    def step(prev: Tensor, state: ModelState) -> tuple[Tensor, ModelState]:
        log_probs, decoder, attention = model.decode_step(prev, state.decoder, state.memory, state.output)
        forced = state.forced_columns(log_probs.size(0))
        if forced is not None:
            log_probs = force_columns(log_probs, forced)
        return log_probs, replace(state, decoder=decoder, attention=attention, position=state.position + 1)

    return step


def force_columns(log_probs: Tensor, forced: Tensor) -> Tensor:
    """log_probs (rows, V) with every column but `forced` ((rows,), -1: none) at -inf in the forced rows."""
    rows = (forced >= 0).nonzero().squeeze(1)
    if not rows.numel():
        return log_probs
    columns = forced.index_select(0, rows)
    kept = log_probs[rows, columns]
    log_probs = log_probs.clone()
    log_probs[rows] = float("-inf")
    log_probs[rows, columns] = kept
    return log_probs


def max_output_lengths(src_lengths: Tensor, cfg: DecodeConfig) -> Tensor:
    """The one max-length rule: a * source length (without EOS) + b output tokens, at least 1. (batch,) -> (batch,)"""
    return (cfg.max_len_a * (src_lengths - 1).float() + cfg.max_len_b).long().clamp(min=1)


@torch.no_grad()
def translate_batch(
    model: Any,
    batch: Batch,
    cfg: DecodeConfig,
    keep_attention: bool = False,
    shortlist: LexicalShortlist | None = None,
    steering: Steering | None = None,
) -> list[list[Hypothesis]]:
    """Decode one batch with `model` (a `Seq2Seq` or an `Ensemble`): greedy when `cfg.beam_size == 1`, beam
    search above, or with `cfg.sampling` `cfg.nbest` samples per sentence, in the order they were drawn.

    `keep_attention` (greedy or sampling, a model with attention): each hypothesis keeps its attention weights,
    (output steps with EOS, source length with EOS). `shortlist`: every sentence searches over its own
    candidate target ids only (`seq2seq.shortlist`). `steering`: every sentence's outputs start with its prefix
    (any search) and hold its required phrases (constrained beam search, `cfg.beam_size` beams, 1 included);
    a sentence may write as many tokens more than the max-length rule allows as its prefix and phrases hold.
    """
    src, src_lengths = batch.src, batch.src_lengths
    if cfg.sampling and cfg.nbest > 1:  # each sample is a row of its own, with its own copy of the sentence
        copies = torch.arange(batch.size, device=src.device).repeat_interleave(cfg.nbest)
        src, src_lengths = src.index_select(0, copies), src_lengths.index_select(0, copies)
        steering = steering.repeated(cfg.nbest) if steering is not None else None
    memory, decoder_state = model.encode(src, src_lengths)
    sentence = torch.arange(src.size(0), device=src.device)
    state = ModelState(decoder_state, memory, sentence=sentence)
    if shortlist is not None:
        required = steering.required_ids() if steering is not None else None
        candidates = shortlist.candidates(src, model.tgt_vocab_size, required)
        output = model.output_rows(candidates.shared, candidates.own, candidates.valid)
        state = ModelState(decoder_state, memory, None, candidates.ids, output, sentence)
    max_lengths = max_output_lengths(src_lengths, cfg).to(src.device)
    if steering is not None:
        max_lengths = max_lengths + torch.tensor(steering.lengths(), device=src.device)
        if steering.has_prefixes:
            state = replace(state, prefix=steering.prefix_table(src.device))
    if steering is not None and steering.has_constraints:
        if cfg.sampling:
            raise ValueError("required phrases need a search: sampling draws outputs and cannot promise them")
        if keep_attention:
            raise ValueError("attention weights are kept by greedy search and sampling only, not with constraints")
        if cfg.coverage_penalty > 0:
            raise ValueError("decode.coverage_penalty ranks plain beam search's hypotheses, not constrained ones")
        state = state.index_select(sentence.repeat_interleave(cfg.beam_size))
        columns = None
        if shortlist is not None:  # each sentence's target id -> its column
            columns = [{int(i): c for c, i in enumerate(row)} for row in candidates.ids.tolist()]
        phrases = steering.sentence_constraints()
        return constrained_beam_search(
            model_step(model), state, max_lengths, cfg.beam_size, phrases, cfg.alpha, cfg.nbest, columns
        )
    if cfg.beam_size == 1:
        pick = most_probable
        if cfg.sampling:  # one random stream per sample, from the sentence and the seed
            pick = Sampler(cfg, sample_streams(batch.src, batch.src_lengths, cfg.seed, cfg.nbest)).pick
        hyps = one_token_at_a_time(model_step(model), state, max_lengths, pick, keep_attention=keep_attention)
        if keep_attention:
            for hyp, length in zip(hyps, src_lengths.tolist()):
                hyp.attention = hyp.attention[:, :length]  # type: ignore[index]
        n = cfg.nbest if cfg.sampling else 1
        return [hyps[i : i + n] for i in range(0, len(hyps), n)]
    if keep_attention:
        raise ValueError("attention weights are kept by greedy search and sampling only (beam_size=1)")
    # every sentence's decoder state once per beam (sentence-major rows); the memory stays one row per sentence
    state = state.index_select(sentence.repeat_interleave(cfg.beam_size))
    return beam_search(
        model_step(model),
        state,
        max_lengths,
        cfg.beam_size,
        cfg.alpha,
        cfg.nbest,
        coverage_penalty=cfg.coverage_penalty,
        src_lengths=src_lengths,
    )


@torch.no_grad()
def score_batch(model: Any, batch: Batch, keep_attention: bool = False) -> list[ForcedScore]:
    """Forced decoding of `batch.tgt_out` (y1 .. yn EOS, PAD after) with `model` (a `Seq2Seq` or an `Ensemble`).

    `keep_attention` (a model with attention): each score keeps its attention weights,
    (output tokens with EOS, source length with EOS).
    """
    if batch.tgt_out is None:
        raise ValueError("score_batch needs a batch with targets (make_batch(src, tgt))")
    memory, decoder_state = model.encode(batch.src, batch.src_lengths)
    lengths = (batch.tgt_out != PAD_ID).sum(dim=1)  # (batch,) tokens with EOS: ids never include PAD
    scores = forced_decode(
        model_step(model), ModelState(decoder_state, memory), batch.tgt_out, lengths, keep_attention=keep_attention
    )
    if keep_attention:
        for scored, length in zip(scores, batch.src_lengths.tolist()):
            scored.attention = scored.attention[:, :length]  # type: ignore[index]
    return scores
