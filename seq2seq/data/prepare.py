"""A config's data, ready to train on: `prepare_data` reads the corpora, trains (or reuses) the tokenizer,
and encodes and length-filters the training pairs. Each epoch's pairs come from
`seq2seq.data.sampled.EpochPairs`, their batches from `seq2seq.data.batches`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from seq2seq.config import Config, ConfigError, DataConfig, target_tag
from seq2seq.data.combined import (
    TrainingCorpus,
    combined_fingerprint,
    is_combined,
    open_training_corpora,
    pairs_per_epoch,
    training_corpora,
    training_tags,
)
from seq2seq.data.corpus import PairSource, ParallelCorpus, SplitReader, fingerprint, open_splits
from seq2seq.data.encoded import EncodedCorpus, cached_training_set, encode_training_set
from seq2seq.data.tokenizer import Tokenizer, build_tokenizer, cached_tokenizer

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: EncodedCorpus  # encoded, length-filtered training pairs (memory-mapped from the cache), with positions
    valid: ParallelCorpus  # text (sources with their tags); a multilingual one holds each language pair in turn
    test: ParallelCorpus
    train_source: PairSource | None = None  # the training text, to re-encode at each epoch (subword sampling)
    corpora: list[TrainingCorpus] = field(default_factory=list)  # the training corpora, in the order of `train`


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Read and clean the corpora, train/reuse SentencePiece (unless given one), encode and length-filter.

    The training split is streamed, never held whole: SentencePiece trains on a sample of it, and the
    encoded pairs are built once per corpus and tokenizer (`seq2seq.data.encoded`), then memory-mapped.
    For local files the caches are named by a fingerprint of the files' bytes, so that when both the
    tokenizer and the encoded pairs are cached, the training text is not read at all; with subword
    sampling (`tokenizer.sampling_alpha` > 0) its reader is still opened (a scan of the files, no
    encoding), for the trainer to re-encode it at every epoch. Several training corpora (`data.corpora`)
    are read as one (`seq2seq.data.combined`).
    """
    cfg = config.data
    corpora, tags = training_corpora(cfg), training_tags(cfg)
    if tokenizer is not None:
        check_tags(tokenizer, tags)
    source_key = combined_fingerprint(cfg) if is_combined(cfg) else fingerprint(cfg)
    if source_key is not None:
        known = tokenizer or cached_tokenizer(source_key, config.tokenizer, tags)
        encoded = cached_training_set(source_key, known, cfg) if known is not None else None
        if known is not None and encoded is not None:
            train, valid, test = open_data(cfg, corpora, source_key, with_train=config.tokenizer.sampling_alpha > 0)
            return _prepared(known, encoded, valid, test, train, corpora)
        tokenizer = known
    train, valid, test = open_data(cfg, corpora, source_key, with_train=True)
    assert train is not None
    if tokenizer is None:
        tokenizer = build_tokenizer(train, config.tokenizer, tags)
    encoded = encode_training_set(train, tokenizer, cfg)
    return _prepared(tokenizer, encoded, valid, test, train, corpora)


def open_data(
    cfg: DataConfig, corpora: list[TrainingCorpus], key: str | None, with_train: bool
) -> tuple[PairSource | None, ParallelCorpus, ParallelCorpus]:
    """The training pairs (when `with_train`: the main corpus's training split, or several corpora read as
    one) and the validation and test sets. The main corpus's splits are opened in one call, so that a hub
    dataset is loaded once for all of them; `key`: the training pairs' fingerprint when already computed."""
    combined = is_combined(cfg)
    splits = ("train", "valid", "test") if with_train else ("valid", "test")
    main = open_splits(cfg if not combined else corpora[0].data, splits, None if combined else key)
    train: PairSource | None = main.get("train")
    if with_train and combined:
        train = open_training_corpora(cfg, key, main["train"])
    return (train, *evaluation_sets(cfg, corpora, main))


def evaluation_sets(
    cfg: DataConfig, corpora: list[TrainingCorpus], main: dict[str, SplitReader]
) -> tuple[ParallelCorpus, ParallelCorpus]:
    """The validation and test sets: the main corpus's (`main`, its open splits), or with `data.target_tags`
    one per language pair (from the first training corpus of each pair), joined. Their sources start with
    the main corpus's tags or the pair's target tag, as the training sources do (tags of other corpora, e.g.
    <BT>, mark training data only)."""
    first_of_pair: dict[str, TrainingCorpus] = {}
    for corpus in corpora if cfg.target_tags else corpora[:1]:
        first_of_pair.setdefault(corpus.pair, corpus)
    valid, test = {}, {}
    for pair, corpus in first_of_pair.items():
        splits = main if corpus is corpora[0] else open_splits(corpus.data, ("valid", "test"))
        tags = corpus.tags if corpus is corpora[0] else (target_tag(corpus.data.tgt_lang),)
        valid[pair], test[pair] = (_tagged(splits[s].read(), tags) for s in ("valid", "test"))
    if len(first_of_pair) > 1:
        log.info("validation and test sets per language pair: %s", ", ".join(first_of_pair))
    return ParallelCorpus.joined(valid), ParallelCorpus.joined(test)


def _tagged(corpus: ParallelCorpus, tags: tuple[str, ...]) -> ParallelCorpus:
    if not tags:
        return corpus
    prefix = " ".join(tags) + " "
    return ParallelCorpus([prefix + line for line in corpus.src], corpus.tgt)


def check_tags(tokenizer: Tokenizer, tags: list[str]) -> None:
    """A given tokenizer (fine-tuning, resuming) must hold every tag the training corpora use, as one piece."""
    missing = [tag for tag in tags if tag not in tokenizer.tags]
    if missing:
        have = ", ".join(tokenizer.tags) or "none"
        raise ConfigError(
            f"the source tag(s) {', '.join(missing)} of the training corpora are not pieces of the model's source "
            f"vocabulary (its tags: {have}); a model keeps the subwords it was trained with, so train one with "
            "these tags from the start"
        )


def _prepared(
    tokenizer: Tokenizer,
    train: EncodedCorpus,
    valid: ParallelCorpus,
    test: ParallelCorpus,
    source: PairSource | None,
    corpora: list[TrainingCorpus],
) -> PreparedData:
    if len(corpora) > 1 or corpora[0].weight != 1:
        parts = train.parts or (len(train),)
        for corpus, kept in zip(corpora, parts):
            tags = f", tags {' '.join(corpus.tags)}" if corpus.tags else ""
            log.info(
                "train: corpus %s (%s): %d pairs, weight %g: %d per epoch%s",
                *(corpus.name, corpus.pair, kept, corpus.weight, pairs_per_epoch(kept, corpus.weight), tags),
            )
    return PreparedData(tokenizer, train, valid, test, source, corpora)
