"""Translate lists of sentences: tokenize, batch by length, search, restore the order, detokenize.

Shared by validation, test scoring, `seq2seq.evaluate` and `seq2seq.translate`. Scoring given
translations (forced decoding) and their attention weights live here too (`seq2seq.score`,
`translate --alignment`). `model` is a `Seq2Seq` or an `Ensemble` of them throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch, sentence_batches
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.decoding.model_search import max_output_lengths, score_batch, translate_batch
from seq2seq.decoding.search import ForcedScore, Hypothesis
from seq2seq.decoding.steering import (
    MAX_PHRASES,
    MAX_PREFIX_TOKENS,
    Phrase,
    Steering,
    SteeringError,
)
from seq2seq.vocab import EOS_PIECE, UNK_ID

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.decoding.ensemble import DecodingModel

log = logging.getLogger(__name__)


@torch.no_grad()
def translate_sentences(
    model: DecodingModel,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    cfg: DecodeConfig,
    device: torch.device,
    max_src_tokens: int | None = None,
    progress: bool = False,
    first_line: int = 1,
    shortlist: LexicalShortlist | None = None,
    prefixes: Sequence[str | None] | None = None,
    constraints: Sequence[Sequence[str]] | None = None,
) -> list[list[Hypothesis]]:
    """The `cfg.nbest` best hypotheses for every sentence, in input order.

    A sentence that is empty (or only whitespace) gets one empty hypothesis without
    running the model. Sources longer than `max_src_tokens` subwords are truncated, with a warning
    that names the line (`first_line` is the number of `sentences[0]` in the input). `shortlist`: every
    sentence searches over its own candidate target ids only (`seq2seq.shortlist`). `prefixes` (a string or
    None per sentence): each output starts with its prefix; `constraints` (a list of phrases per sentence):
    each output holds its phrases (`seq2seq.decoding.steering`). A prefix or phrase that cannot be honoured
    raises `SteeringError` naming its line, before anything is decoded.
    """
    was_training = model.training
    model.eval()
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
    todo = [i for i, s in enumerate(sentences) if s.strip()]
    ids = encode_sources(tokenizer, [sentences[i] for i in todo], max_src_tokens, first_line, todo)
    steering = None
    if prefixes is not None or constraints is not None:
        steering = encode_steering(tokenizer, ids, todo, cfg, prefixes, constraints, first_line)
    batches = sentence_batches([len(seq) for seq in ids], cfg.batch_size)
    if steering is not None and steering.has_constraints:  # apart: a sentence without phrases searches as usual
        batches = steering.split(batches)
    for positions in tqdm(batches, desc="decoding", unit="batch", disable=not progress, leave=False):
        batch = make_batch([ids[p] for p in positions], indices=[todo[p] for p in positions]).to(device)
        steer = steering.select(positions) if steering is not None else None
        for index, hyps in zip(batch.indices, translate_batch(model, batch, cfg, shortlist=shortlist, steering=steer)):
            results[index] = hyps
    if steering is not None and steering.has_constraints:
        for k, i in enumerate(todo):
            if not all(holds_phrase(results[i][0].tokens, phrase) for phrase in steering.constraints[k]):
                log.warning(
                    "input line %d: the output lacks a required phrase (its maximum length cut it short)",
                    first_line + i,
                )
    model.train(was_training)
    return results


def holds_phrase(tokens: Sequence[int], phrase: Sequence[int]) -> bool:
    """Whether `phrase`'s ids appear in `tokens` one after another."""
    n = len(phrase)
    return any(list(tokens[j : j + n]) == list(phrase) for j in range(len(tokens) - n + 1))


def encode_steering(
    tokenizer: Tokenizer,
    src_ids: Sequence[Sequence[int]],
    todo: Sequence[int],
    cfg: DecodeConfig,
    prefixes: Sequence[str | None] | None,
    constraints: Sequence[Sequence[str]] | None,
    first_line: int = 1,
) -> Steering:
    """The prefixes and required phrases of the sentences `todo` (whose source ids are `src_ids`) as target
    ids; `SteeringError` names the line of the first that cannot be honoured: a phrase that is empty or
    holds a character the target vocabulary lacks, more phrase tokens than the sentence's max output length,
    more than `MAX_PHRASES` phrases, or a prefix over `MAX_PREFIX_TOKENS` tokens."""
    limits = max_output_lengths(torch.tensor([len(s) + 1 for s in src_ids], dtype=torch.long), cfg).tolist()
    given_prefixes = [(prefixes[i] if prefixes is not None else None) or "" for i in todo]
    given_phrases = [[" ".join(p.split()) for p in constraints[i]] if constraints is not None else [] for i in todo]
    flat = [phrase for phrases in given_phrases for phrase in phrases]  # every text encoded in one call
    encoded = iter(tokenizer.encode_tgt([p for p in given_prefixes if p.strip()] + flat))
    prefix_ids = [next(encoded) if p.strip() else [] for p in given_prefixes]
    phrase_ids = [[tuple(next(encoded)) for _ in phrases] for phrases in given_phrases]
    for k, i in enumerate(todo):
        line = first_line + i
        if len(prefix_ids[k]) > MAX_PREFIX_TOKENS:
            problem = f"the prefix has {len(prefix_ids[k])} target tokens; the limit is {MAX_PREFIX_TOKENS}"
            raise SteeringError(line, problem, kind="prefix")
        if len(given_phrases[k]) > MAX_PHRASES:
            raise SteeringError(line, f"{len(given_phrases[k])} required phrases; the limit is {MAX_PHRASES}")
        for text, ids in zip(given_phrases[k], phrase_ids[k]):
            _check_phrase(tokenizer, text, ids, line)
        total = sum(map(len, phrase_ids[k]))
        if total > limits[k]:
            raise SteeringError(
                line,
                f"the required phrases hold {total} target tokens, more than the {limits[k]} its output may have "
                "(decode.max_len_a x source tokens + decode.max_len_b)",
            )
    return Steering(prefix_ids, phrase_ids, tokenizer.continues_word)


def _check_phrase(tokenizer: Tokenizer, text: str, ids: Phrase, line: int) -> None:
    """A phrase must hold something, and nothing the target vocabulary lacks."""
    if not text:
        raise SteeringError(line, "a required phrase is empty")
    if UNK_ID in ids:
        pieces = tokenizer.tgt.encode(text, out_type=str)
        unknown = "".join(p for p, i in zip(pieces, ids) if i == UNK_ID)
        raise SteeringError(
            line, f"the required phrase {text!r} cannot be encoded: the target vocabulary has no piece for {unknown!r}"
        )


def encode_sources(
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    max_src_tokens: int | None = None,
    first_line: int | None = 1,
    positions: Sequence[int] | None = None,
) -> list[list[int]]:
    """Source ids of the stripped sentences, cut to `max_src_tokens` with a warning naming the line.

    The line of `sentences[k]` is `first_line + positions[k]` (`positions` defaults to 0, 1, ...);
    `first_line=None` truncates without a warning (a caller that has warned already).
    """
    ids = tokenizer.encode_src([s.strip() for s in sentences])
    if max_src_tokens is None:
        return ids
    for k, seq in enumerate(ids):
        if len(seq) > max_src_tokens and first_line is not None:
            line = first_line + (positions[k] if positions is not None else k)
            log.warning("input line %d: %d subword tokens, truncated to %d", line, len(seq), max_src_tokens)
    return [seq[:max_src_tokens] for seq in ids]


def source_pieces(tokenizer: Tokenizer, sentence: str, max_src_tokens: int | None = None) -> list[str]:
    """The pieces of the source ids `encode_sources` gives, as text (an unknown character as itself, not
    `<unk>`), then "</s>": the columns of the attention weights."""
    return tokenizer.src_pieces(sentence.strip())[:max_src_tokens] + [EOS_PIECE]


def best_strings(tokenizer: Tokenizer, hypotheses: Sequence[Sequence[Hypothesis]]) -> list[str]:
    """The detokenized top hypothesis of every sentence."""
    return tokenizer.decode_tgt([hyps[0].tokens for hyps in hypotheses])


Outputs = Sequence[str] | Sequence[Sequence[int]]  # translations as text, or as target ids (without BOS/EOS)


@torch.no_grad()
def score_sentences(
    model: DecodingModel,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    outputs: Outputs,
    device: torch.device,
    batch_size: int = 64,
    keep_attention: bool = False,
    max_src_tokens: int | None = None,
    first_line: int | None = 1,
) -> list[ForcedScore]:
    """How probable `model` finds each output given its source (forced decoding), in input order.

    An output given as text is tokenized with the target SentencePiece model (so its score is that of
    the canonical segmentation); given as ids, it is scored as is. An empty output scores EOS alone,
    and an empty source is scored as the model sees it (EOS alone). Sources are cut as in
    `translate_sentences`.
    """
    if len(sources) != len(outputs):
        raise ValueError(f"{len(sources)} sources but {len(outputs)} outputs")
    was_training = model.training
    model.eval()
    src_ids = encode_sources(tokenizer, sources, max_src_tokens, first_line)
    tgt_ids = _target_ids(tokenizer, outputs)
    results: list[ForcedScore] = [ForcedScore([]) for _ in sources]
    for positions in sentence_batches([len(seq) for seq in src_ids], batch_size):
        batch = make_batch([src_ids[p] for p in positions], [tgt_ids[p] for p in positions], positions).to(device)
        for index, scored in zip(batch.indices, score_batch(model, batch, keep_attention)):
            results[index] = scored
    model.train(was_training)
    return results


def _target_ids(tokenizer: Tokenizer, outputs: Outputs) -> list[list[int]]:
    texts = [k for k, output in enumerate(outputs) if isinstance(output, str)]
    ids = [[] if isinstance(output, str) else [int(i) for i in output] for output in outputs]
    for k, encoded in zip(texts, tokenizer.encode_tgt([outputs[k] for k in texts])):  # type: ignore[misc]
        ids[k] = encoded
    return ids


@dataclass
class AttentionMap:
    """One sentence's attention: row j holds output piece j's weights over the source pieces."""

    src_pieces: list[str]  # the source pieces, then "</s>"
    out_pieces: list[str]  # the output pieces, then "</s>"
    weights: Tensor  # (len(out_pieces), len(src_pieces)) on the CPU; each row sums to 1


def attention_for(
    model: DecodingModel,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    outputs: Outputs,
    device: torch.device,
    batch_size: int = 64,
    max_src_tokens: int | None = None,
    first_line: int | None = 1,
) -> list[AttentionMap]:
    """The attention of `model` over each source while it produces the given output (forced decoding).

    For the output of greedy search these are the weights the search saw; for beam search, those of the
    chosen hypothesis. An ensemble's weights are the mean of its members'. Raises ValueError for a
    model without attention (`model.attention=none`). Outputs are text or ids, as in `score_sentences`.
    """
    if not model.has_attention:
        raise ValueError("the model has no attention weights (model.attention=none)")
    scores = score_sentences(
        model,
        tokenizer,
        sources,
        outputs,
        device,
        batch_size,
        keep_attention=True,
        max_src_tokens=max_src_tokens,
        first_line=first_line,
    )
    maps = []
    for source, output, scored in zip(sources, outputs, scores):
        src_pieces = source_pieces(tokenizer, source, max_src_tokens)
        if isinstance(output, str):
            out_pieces = tokenizer.tgt.encode(output, out_type=str)
        else:
            out_pieces = tokenizer.tgt_pieces(output)
        assert scored.attention is not None and scored.attention.shape == (len(out_pieces) + 1, len(src_pieces))
        maps.append(AttentionMap(src_pieces, [*out_pieces, EOS_PIECE], scored.attention))
    return maps


def hypothesis_attention(
    model: DecodingModel,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    hypotheses: Sequence[Sequence[Hypothesis]],
    device: torch.device,
    batch_size: int = 64,
    max_src_tokens: int | None = None,
) -> list[list[AttentionMap | None]]:
    """`attention_for` every hypothesis of every source (as `translate_sentences` returns them), grouped the
    same way; None for an empty source line, which `translate_sentences` leaves to the model-free empty
    hypothesis. One forced-decoding pass for all of them."""
    pairs = [(line, k) for line, hyps in enumerate(hypotheses) for k in range(len(hyps)) if sources[line].strip()]
    maps = attention_for(
        model,
        tokenizer,
        [sources[line] for line, _ in pairs],
        [hypotheses[line][k].tokens for line, k in pairs],
        device,
        batch_size,
        max_src_tokens=max_src_tokens,
        first_line=None,  # translate_sentences has warned about long lines already
    )
    grouped: list[list[AttentionMap | None]] = [[None] * len(hyps) for hyps in hypotheses]
    for (line, k), attention in zip(pairs, maps):
        grouped[line][k] = attention
    return grouped
