"""Searching with a model: the model as the searches' step function (`ModelState`, `model_step`), and one
batch decoded (`translate_batch`: greedy, beam, sampling or constrained search) or scored (`score_batch`).

The model may be one `Seq2Seq` or an `Ensemble` (`seq2seq.decoding.ensemble`): both offer `encode` and
`decode_step`. A forced prefix (`seq2seq.decoding.steering`) is the step's business, so every search
honours it; required phrases need the constrained search.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.data.batches import Batch
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.decoding.sampling import Sampler, sample_streams
from seq2seq.decoding.search import (
    ForcedScore,
    Hypothesis,
    StepFn,
    beam_search,
    forced_decode,
    most_probable,
    one_token_at_a_time,
)
from seq2seq.decoding.steering import Steering, constrained_beam_search
from seq2seq.vocab import PAD_ID

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.model.decoder import DecoderState, Memory


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

    def cat(self, other: ModelState) -> ModelState:
        """This state's rows, then `other`'s, as one (a running batch that sentences join, `search.RunningGreedy`
        and `search.RunningBeams`): `other`'s sentences are numbered after these. Sentences with a shortlist or
        a forced prefix cannot join a running batch: their columns and step counts are the batch's."""
        if any(s.vocab is not None or s.prefix is not None for s in (self, other)):
            raise ValueError("a running batch takes sentences without a shortlist or a forced prefix")
        mine, theirs = self.sentence, other.sentence
        if (mine is None) != (theirs is None):
            raise ValueError("both states number their rows' sentences, or neither does")
        sentence = None
        if mine is not None and theirs is not None:
            sentence = torch.cat([mine, theirs + (int(mine[-1]) + 1 if mine.numel() else 0)])
        return ModelState(self.decoder.cat(other.decoder), self.memory.cat(other.memory), sentence=sentence)

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
        if shortlist is not None:  # each sentence's target id -> its column (padding columns hold no id)
            shared = candidates.shared.size(0)
            valid = torch.cat([candidates.valid.new_ones(candidates.own.size(0), shared), candidates.valid], dim=1)
            columns = [
                {int(i): c for c, (i, ok) in enumerate(zip(row, oks)) if ok}
                for row, oks in zip(candidates.ids.tolist(), valid.tolist())
            ]
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
