"""Several training corpora in one run (`data.corpora`), read as one: their tags, weights and language pairs.

The main corpus (`data.*`) comes first, then each entry of `data.corpora`, whose null keys take the main
corpus's values (`training_corpora`). `CombinedCorpus` reads their training splits one after another as a
single `PairSource`: positions run on from one corpus to the next, and each chunk carries its corpus's
number and source tags, which the encoder prepends as subword ids (`seq2seq.data.encoded`). So the tokenizer
and the encoded cache see one corpus, and a cache of several corpora is named by all their keys and tags.

Tags: a corpus's `tag` (e.g. <BT> on back-translations, Caswell et al. 2019) and, with `data.target_tags`,
the target-language tag <2xx> that picks a multilingual model's output language (Johnson et al. 2017).
They are SentencePiece user-defined symbols, each one piece, prepended as ids (never as text, which
SentencePiece would give a piece of its own for the space before it).

Weights (`sampled_rows`): an epoch takes weight x kept pairs of each corpus: weight 2 repeats every pair,
0.5 a random half, a different half at each epoch (a function of the seed and the epoch only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from seq2seq.config import ConfigError, DataConfig, target_tag
from seq2seq.data.corpus import CHUNK_PAIRS, PairChunk, SplitReader, fingerprint, open_splits


@dataclass(frozen=True)
class TrainingCorpus:
    """One training corpus of a run, resolved: where its training split is, its tags and its weight."""

    name: str
    data: DataConfig  # the main corpus's settings with this corpus's place, languages and prefix
    tags: tuple[str, ...]  # prepended to every source sentence, in this order
    weight: float

    @property
    def pair(self) -> str:
        """Its language pair, e.g. "de-en"."""
        return f"{self.data.src_lang}-{self.data.tgt_lang}"


def training_corpora(cfg: DataConfig) -> list[TrainingCorpus]:
    """The main corpus, then each entry of `data.corpora` with the main corpus's values for its null keys."""
    main = dataclasses.replace(cfg, corpora=[], tag=None, weight=1.0)
    corpora = [TrainingCorpus(cfg.name, main, _tags(cfg, cfg.tgt_lang, cfg.tag), cfg.weight)]
    for i, entry in enumerate(cfg.corpora):
        where = f"data.corpora[{i}]"
        if entry.dir is not None or entry.hub_name is not None:  # a place of its own
            same_hub = entry.hub_name == cfg.hub_name
            place = {
                "source": entry.source or "auto",
                "dir": entry.dir,
                "hub_name": entry.hub_name,
                "hub_config": entry.hub_config or (cfg.hub_config if same_hub else None),
            }
        else:
            place = {"source": entry.source or cfg.source, "dir": cfg.dir, "hub_name": cfg.hub_name}
            place["hub_config"] = entry.hub_config or cfg.hub_config
        data = dataclasses.replace(
            main,
            **place,
            format=entry.format or cfg.format,
            src_lang=entry.src_lang or cfg.src_lang,
            tgt_lang=entry.tgt_lang or cfg.tgt_lang,
            train_prefix=entry.prefix or cfg.train_prefix,
            max_train_pairs=entry.max_pairs,
        )
        if data.resolved_source == "local" and not data.dir:
            raise ConfigError(f"{where}: give it a dir (local files) or a hub_name (a hub dataset)")
        origin = Path(data.dir).name if data.resolved_source == "local" and data.dir else data.hub_name
        name = entry.name or f"{origin}/{data.train_prefix}"
        corpora.append(TrainingCorpus(name, data, _tags(cfg, data.tgt_lang, entry.tag), entry.weight))
    names = [c.name for c in corpora]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(
                f"data.corpora[{i - 1}] is named {name!r} like another training corpus; give it a name of its own"
            )
    return corpora


def _tags(cfg: DataConfig, tgt_lang: str, tag: str | None) -> tuple[str, ...]:
    tags = (target_tag(tgt_lang),) if cfg.target_tags else ()
    return tags + ((tag,) if tag else ())


def training_tags(cfg: DataConfig) -> list[str]:
    """Every source tag the training corpora use, in order of first use: the tokenizer's user-defined symbols."""
    tags: list[str] = []
    for corpus in training_corpora(cfg):
        tags.extend(tag for tag in corpus.tags if tag not in tags)
    return tags


def is_combined(cfg: DataConfig) -> bool:
    """Whether the training pairs need `CombinedCorpus`: several corpora or tags (else a plain `SplitReader`)."""
    return bool(cfg.corpora or cfg.tag or cfg.target_tags)


class CombinedCorpus:
    """The training splits of several corpora, one after another, as one `PairSource`."""

    def __init__(self, corpora: Sequence[TrainingCorpus], readers: Sequence[SplitReader]) -> None:
        self.corpora, self.readers = list(corpora), list(readers)

    @cached_property
    def key(self) -> str:
        return combined_key([r.key for r in self.readers], self.corpora)

    @property
    def raw_pairs(self) -> int:
        return sum(r.raw_pairs for r in self.readers)

    def chunks(self, size: int = CHUNK_PAIRS, desc: str | None = None) -> Iterator[PairChunk]:
        first = 0
        for number, (corpus, reader) in enumerate(zip(self.corpora, self.readers)):
            for chunk in reader.chunks(size, f"{desc}: {corpus.name}" if desc else None):
                yield PairChunk(chunk.src, chunk.tgt, chunk.positions + first, corpus.tags, number)
            first += reader.raw_pairs


def combined_key(keys: Sequence[str], corpora: Sequence[TrainingCorpus]) -> str:
    """Names the caches of several corpora: each one's key and tags, in order (names and weights do not count)."""
    parts = [[key, list(corpus.tags)] for key, corpus in zip(keys, corpora)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def open_training_corpora(cfg: DataConfig, key: str | None = None, main: SplitReader | None = None) -> CombinedCorpus:
    """A reader of every training corpus; `key`: the combined fingerprint when already computed; `main`: the
    main corpus's training split when already open."""
    corpora = training_corpora(cfg)
    readers = [
        main if number == 0 and main is not None else open_splits(corpus.data, ("train",))["train"]
        for number, corpus in enumerate(corpora)
    ]
    combined = CombinedCorpus(corpora, readers)
    if key is not None:
        combined.__dict__["key"] = key  # the cached_property, already known
    return combined


def combined_fingerprint(cfg: DataConfig) -> str | None:
    """`corpus.fingerprint` for several corpora: known without reading when every corpus is local files."""
    corpora = training_corpora(cfg)
    keys = [fingerprint(corpus.data) for corpus in corpora]
    if any(key is None for key in keys):
        return None
    return combined_key([key for key in keys if key is not None], corpora)


def pairs_per_epoch(kept: int, weight: float) -> int:
    """How many rows of an epoch a corpus of `kept` pairs with `weight` gives (as `sampled_rows`)."""
    whole, fraction = divmod(float(weight), 1.0)
    return int(whole) * kept + int(round(fraction * kept))


def sampled_rows(parts: Sequence[int], weights: Sequence[float], seed: int, epoch: int) -> np.ndarray | None:
    """An epoch's pairs by corpus weight: (rows,) int64 indices into the kept pairs (corpus i holds the next
    `parts[i]` of them), weight x kept pairs per corpus; None when every weight is 1 (each pair once)."""
    if all(w == 1 for w in weights):
        return None
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    rows, first = [], 0
    for kept, weight in zip(parts, weights):
        whole, fraction = divmod(float(weight), 1.0)
        pairs = np.arange(first, first + kept, dtype=np.int64)
        rows.extend([pairs] * int(whole))
        extra = int(round(fraction * kept))
        if extra:
            rows.append(first + np.sort(rng.choice(kept, size=extra, replace=False)))
        first += kept
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


__all__ = [
    "CombinedCorpus",
    "TrainingCorpus",
    "combined_fingerprint",
    "is_combined",
    "open_training_corpora",
    "pairs_per_epoch",
    "sampled_rows",
    "training_corpora",
    "training_tags",
]
