"""A config's data, ready to train on: `prepare_data` reads the corpus, trains (or reuses) the tokenizer,
and encodes and length-filters the training pairs. Each epoch's pairs come from
`seq2seq.data.sampled.EpochPairs`, their batches from `seq2seq.data.batches`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from seq2seq.config import Config
from seq2seq.data.corpus import PairSource, ParallelCorpus, fingerprint, open_splits
from seq2seq.data.encoded import EncodedCorpus, cached_training_set, encode_training_set
from seq2seq.data.tokenizer import Tokenizer, build_tokenizer, cached_tokenizer

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: EncodedCorpus  # encoded, length-filtered training pairs (memory-mapped from the cache), with positions
    valid: ParallelCorpus  # text
    test: ParallelCorpus
    train_source: PairSource | None = None  # the training text, to re-encode at each epoch (subword sampling)


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Read and clean the corpus, train/reuse SentencePiece (unless given one), encode and length-filter.

    The training split is streamed, never held whole: SentencePiece trains on a sample of it, and the
    encoded pairs are built once per corpus and tokenizer (`seq2seq.data.encoded`), then memory-mapped.
    For local files the caches are named by a fingerprint of the files' bytes, so that when both the
    tokenizer and the encoded pairs are cached, the training text is not read at all; with subword
    sampling (`tokenizer.sampling_alpha` > 0) its reader is still opened (a scan of the files, no
    encoding), for the trainer to re-encode it at every epoch.
    """
    source_key = fingerprint(config.data)
    if source_key is not None:
        known = tokenizer or cached_tokenizer(source_key, config.tokenizer)
        encoded = cached_training_set(source_key, known, config.data) if known is not None else None
        if known is not None and encoded is not None:
            sampling = config.tokenizer.sampling_alpha > 0
            splits = open_splits(config.data, ("train", "valid", "test") if sampling else ("valid", "test"), source_key)
            valid, test = splits["valid"].read(), splits["test"].read()
            return PreparedData(known, encoded, valid, test, splits.get("train"))
        tokenizer = known
    splits = open_splits(config.data, key=source_key)
    train = splits["train"]
    if tokenizer is None:
        tokenizer = build_tokenizer(train, config.tokenizer)
    encoded = encode_training_set(train, tokenizer, config.data)
    return PreparedData(tokenizer, encoded, splits["valid"].read(), splits["test"].read(), train)
