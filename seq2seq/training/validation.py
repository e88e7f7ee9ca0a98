"""Scoring a model: validation loss and BLEU during training, test scores after it.

Plain functions of a model and sentences, shared by the trainer, `seq2seq.evaluate` and the benchmark.
Validation BLEU is always greedy (`decode` with beam size 1); the test set is scored with greedy
and beam search.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from seq2seq.checkpoint import model_from_checkpoint
from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch, token_batches
from seq2seq.data.corpus import ParallelCorpus
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.inference import best_strings, translate_sentences
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.metrics import Scores, corpus_scores
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.results import CheckpointScores, SearchScores
from seq2seq.training.loss import sequence_loss
from seq2seq.vocab import EOS_ID, PAD_ID

log = logging.getLogger("seq2seq.training.trainer")


@torch.no_grad()
def validation_loss(
    model: Seq2Seq, src: list[list[int]], tgt: list[list[int]], batch_tokens: int, device: torch.device
) -> tuple[float, list[list[int]]]:
    """Teacher-forced cross-entropy per target token (no label smoothing), and the teacher-forced outputs.

    The outputs are the argmax at each position given the *gold* prefix, cut at the first EOS:
    what the model would write if it never saw its own mistakes (see `validate`).
    """
    model.eval()
    total, tokens = 0.0, 0
    forced: list[list[int]] = [[] for _ in src]
    for indices in token_batches([len(s) for s in src], [len(t) for t in tgt], batch_tokens):
        batch = make_batch([src[i] for i in indices], [tgt[i] for i in indices]).to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (batch, tgt_len, vocab)
        total += float(sequence_loss(logits, batch.tgt_out))
        tokens += batch.num_tgt_tokens
        predictions = logits.argmax(dim=-1).masked_fill(batch.tgt_out == PAD_ID, EOS_ID).tolist()
        for i, row in zip(indices, predictions):
            forced[i] = row[: row.index(EOS_ID)] if EOS_ID in row else row
    return total / max(tokens, 1), forced


def greedy_translations(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    decode: DecodeConfig,
    device: torch.device,
    progress: bool = False,
) -> list[str]:
    """`model`'s greedy translations of `sentences` (what validation BLEU scores), detokenized."""
    greedy = replace(decode, beam_size=1, nbest=1, sampling=False)
    return best_strings(tokenizer, translate_sentences(model, tokenizer, sentences, greedy, device, progress=progress))


def validate(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    valid: ParallelCorpus,
    valid_ids: tuple[list[list[int]], list[list[int]]],
    decode: DecodeConfig,
    batch_tokens: int,
    device: torch.device,
    progress: bool = False,
) -> tuple[dict[str, float], list[str]]:
    """Score the validation set: ({key: value for VALIDATION_KEYS}, the greedy translations).

    Exposure bias made visible: `teacher_forced_bleu` scores the model fed the gold prefix (as in
    training), `bleu` the model fed its own greedy output (as at inference); their difference,
    `exposure_bias_gap`, is what teacher forcing hides.
    """
    loss, forced = validation_loss(model, *valid_ids, batch_tokens, device)
    hyps = greedy_translations(model, tokenizer, valid.src, decode, device, progress)
    scores = corpus_scores(hyps, valid.tgt)
    teacher_forced_bleu = corpus_scores(tokenizer.decode_tgt(forced), valid.tgt, ter=False).bleu
    row = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "ter": scores.ter,
        "teacher_forced_bleu": teacher_forced_bleu,
        "exposure_bias_gap": teacher_forced_bleu - scores.bleu,
    }
    for pair, pair_score in pair_scores(hyps, valid).items():  # a multilingual set: each language pair too
        row[f"bleu/{pair}"], row[f"chrf/{pair}"] = pair_score.bleu, pair_score.chrf
    return row, hyps


def pair_scores(hyps: Sequence[str], corpus: ParallelCorpus) -> dict[str, Scores]:
    """BLEU and chrF of each language pair of a multilingual set ({} for a set of one pair)."""
    return {pair: corpus_scores(hyps[span], corpus.tgt[span], ter=False) for pair, span in corpus.spans()}


def search_bleu(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    corpus: ParallelCorpus,
    decode: DecodeConfig,
    device: torch.device,
    progress: bool = False,
    shortlist: LexicalShortlist | None = None,
    prefixes: Sequence[str | None] | None = None,
    constraints: Sequence[Sequence[str]] | None = None,
) -> tuple[SearchScores, list[str]]:
    """Translate `corpus.src` with `decode` (its best hypothesis) and score against `corpus.tgt`, timed.

    `shortlist`: every sentence searches over its own candidate target ids only (`seq2seq.shortlist`);
    `prefixes`, `constraints`: steer every sentence's output (`seq2seq.decoding.steering`)."""
    start = time.monotonic()
    found = translate_sentences(
        model,
        tokenizer,
        corpus.src,
        decode,
        device,
        progress=progress,
        shortlist=shortlist,
        prefixes=prefixes,
        constraints=constraints,
    )
    hyps = best_strings(tokenizer, found)
    seconds = time.monotonic() - start
    scores = SearchScores.measured(decode.beam_size, corpus_scores(hyps, corpus.tgt), len(hyps), seconds)
    by_pair = pair_scores(hyps, corpus)
    if by_pair:
        scores.pairs = {pair: {"bleu": s.bleu, "chrf": s.chrf} for pair, s in by_pair.items()}
    return scores, hyps


def evaluate_checkpoint(
    path: Path, test: ParallelCorpus, decode: DecodeConfig, beam_size: int, device: torch.device, progress: bool = False
) -> CheckpointScores:
    """A checkpoint's greedy and beam-`beam_size` scores on the test split, logged."""
    model, tokenizer, _, _ = model_from_checkpoint(path, device)
    scores = evaluate_test_set(model, tokenizer, test, decode, beam_size, device, progress)
    for name, search in (("greedy", scores.greedy), ("beam", scores.beam)):
        log.info(
            "test %s (%s, beam %d): BLEU %.2f  chrF %.2f  TER %.2f  [%s]",
            *(path.name, name, search.beam_size, search.bleu, search.chrf, search.ter, search.bleu_signature),
        )
        if search.pairs:
            log.info("  by language pair: %s", ", ".join(f"{p} BLEU {v['bleu']:.2f}" for p, v in search.pairs.items()))
    return scores


def evaluate_test_set(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    test: ParallelCorpus,
    decode: DecodeConfig,
    beam_size: int,
    device: torch.device,
    progress: bool = False,
) -> CheckpointScores:
    """Greedy and beam-`beam_size` scores of `model` on the test split."""
    greedy, _ = search_bleu(
        model, tokenizer, test, replace(decode, beam_size=1, nbest=1, sampling=False), device, progress
    )
    beam, _ = search_bleu(
        model, tokenizer, test, replace(decode, beam_size=beam_size, nbest=1, sampling=False), device, progress
    )
    return CheckpointScores(greedy, beam)
