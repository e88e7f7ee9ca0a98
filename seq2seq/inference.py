"""Translate lists of sentences: tokenize, batch by length, search, restore the order, detokenize.

Shared by validation, test scoring, `seq2seq.evaluate` and `seq2seq.translate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data import make_batch, sentence_batches
from seq2seq.model import Seq2Seq
from seq2seq.search import Hypothesis, translate_batch
from seq2seq.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@torch.no_grad()
def translate_sentences(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    cfg: DecodeConfig,
    device: torch.device,
    max_src_tokens: int | None = None,
    progress: bool = False,
    first_line: int = 1,
) -> list[list[Hypothesis]]:
    """The `cfg.nbest` best hypotheses for every sentence, in input order.

    A sentence that is empty (or only whitespace) gets one empty hypothesis without
    running the model. Sources longer than `max_src_tokens` subwords are truncated, with a warning
    that names the line (`first_line` is the number of `sentences[0]` in the input).
    """
    was_training = model.training
    model.eval()
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
    todo = [i for i, s in enumerate(sentences) if s.strip()]
    ids = tokenizer.encode_src([sentences[i].strip() for i in todo])
    if max_src_tokens is not None:
        for position, seq in zip(todo, ids):
            if len(seq) > max_src_tokens:
                log.warning(
                    "input line %d: %d subword tokens, truncated to %d", first_line + position, len(seq), max_src_tokens
                )
        ids = [seq[:max_src_tokens] for seq in ids]
    batches = sentence_batches([len(seq) for seq in ids], cfg.batch_size)
    for positions in tqdm(batches, desc="decoding", unit="batch", disable=not progress, leave=False):
        batch = make_batch([ids[p] for p in positions], indices=[todo[p] for p in positions]).to(device)
        for index, hyps in zip(batch.indices, translate_batch(model, batch, cfg)):
            results[index] = hyps
    model.train(was_training)
    return results


def best_strings(tokenizer: Tokenizer, hypotheses: Sequence[Sequence[Hypothesis]]) -> list[str]:
    """The detokenized top hypothesis of every sentence."""
    return tokenizer.decode_tgt([hyps[0].tokens for hyps in hypotheses])
