"""Parallel corpora, cleaned, aligned, and read in chunks: the API the rest of the package reads corpora with.

A split is read by a `SplitReader`, chunk by chunk (`chunks()`), so that a training set of millions of
pairs never sits in memory as Python strings; `load_split` collects a (small) split into a `ParallelCorpus`.
Where the raw pairs come from is a source's business: local text, TSV or JSONL files
(`seq2seq.data.local_files`, whose docstring describes the layouts) or the Hugging Face hub
(`seq2seq.data.hub`); this module picks one by `data.source` and cleans what it yields.

Cleaning strips both sides and drops pairs with an empty side (counted and logged). Length filtering in
subword tokens needs the tokenizer and happens elsewhere; `length_filter` is the rule it applies.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seq2seq.config import DataConfig
from seq2seq.data.errors import CorpusError
from seq2seq.data.hub import HubSplit, load_hub_dataset
from seq2seq.data.local_files import files_fingerprint, find_file, local_split
from seq2seq.data.progress import progress_bar

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
REPO_ROOT = Path(__file__).resolve().parents[2]
CHUNK_PAIRS = 50_000  # pairs read, cleaned (and later encoded) at a time


@dataclass
class PairChunk:
    """Some consecutive pairs of a split, cleaned."""

    src: list[str]
    tgt: list[str]
    positions: np.ndarray  # (pairs,) int64: each pair's index among the split's raw pairs (lines or records)
    tags: tuple[str, ...] = ()  # source tags to prepend (`seq2seq.data.combined`)
    corpus: int = 0  # which training corpus the pairs come from (its number in `combined.training_corpora`)

    def __len__(self) -> int:
        return len(self.src)


class PairSource(Protocol):
    """Training pairs that can be read more than once, chunk by chunk: a `SplitReader` or a `ParallelCorpus`."""

    @property
    def key(self) -> str:
        """Names the caches built from these pairs (tokenizer, encoded corpus)."""
        ...

    @property
    def raw_pairs(self) -> int:
        """Pairs before cleaning: positions run from 0 to raw_pairs - 1."""
        ...

    def chunks(self, size: int = CHUNK_PAIRS, desc: str | None = None) -> Iterator[PairChunk]:
        """The cleaned pairs in order, `size` raw pairs at a time; `desc`: show a progress bar with this label."""
        ...


@dataclass
class ParallelCorpus:
    """One split in memory: `src[i]` is translated by `tgt[i]`. A multilingual validation or test set holds
    one language pair after another: `groups` names them, with their sizes ([] for one pair)."""

    src: list[str]
    tgt: list[str]
    groups: list[tuple[str, int]] = field(default_factory=list)  # [(language pair, sentences), ...] in order

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"unaligned corpus: {len(self.src)} source vs {len(self.tgt)} target sentences")
        if self.groups and sum(n for _, n in self.groups) != len(self.src):
            raise ValueError(f"groups {self.groups} do not add up to the {len(self.src)} sentences")

    def __len__(self) -> int:
        return len(self.src)

    @classmethod
    def joined(cls, parts: dict[str, ParallelCorpus]) -> ParallelCorpus:
        """One corpus of several language pairs, in the order given ({"en-de": ..., "en-fr": ...})."""
        if len(parts) == 1:
            return next(iter(parts.values()))
        src = [line for part in parts.values() for line in part.src]
        tgt = [line for part in parts.values() for line in part.tgt]
        return cls(src, tgt, [(name, len(part)) for name, part in parts.items()])

    def spans(self) -> list[tuple[str, slice]]:
        """Each language pair's sentences as a slice ([] for one pair)."""
        spans, start = [], 0
        for name, n in self.groups:
            spans.append((name, slice(start, start + n)))
            start += n
        return spans

    def head(self, n: int | None) -> ParallelCorpus:
        """The first `n` sentences (of each language pair); all of them when `n` is None."""
        if n is None:
            return self
        if not self.groups:
            return ParallelCorpus(self.src[:n], self.tgt[:n])
        return ParallelCorpus.joined(
            {name: ParallelCorpus(self.src[span][:n], self.tgt[span][:n]) for name, span in self.spans()}
        )

    @property
    def raw_pairs(self) -> int:
        return len(self.src)

    @property
    def key(self) -> str:
        """A hash of the text itself (a corpus in memory has no files to fingerprint)."""
        digest = hashlib.sha256()
        for lines in (self.src, self.tgt):
            digest.update(b"\x00side\x00")
            for line in lines:
                digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        return digest.hexdigest()[:20]

    def chunks(self, size: int = CHUNK_PAIRS, desc: str | None = None) -> Iterator[PairChunk]:
        for start in progress_bar(range(0, len(self), size), desc, total=-(-len(self) // size), unit="chunk"):
            end = min(start + size, len(self))
            yield PairChunk(self.src[start:end], self.tgt[start:end], np.arange(start, end, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- public API


def open_splits(cfg: DataConfig, splits: Sequence[str] = SPLITS, key: str | None = None) -> dict[str, SplitReader]:
    """Readers for several splits (a hub dataset is fetched once for all of them); `key`: the training
    split's fingerprint when already computed."""
    hub = load_hub_dataset(cfg) if cfg.resolved_source == "hub" else None
    return {split: SplitReader(cfg, split, hub, key if split == "train" else None) for split in splits}


def load_corpus(cfg: DataConfig, splits: Sequence[str] = SPLITS) -> dict[str, ParallelCorpus]:
    """Load several splits into memory."""
    return {split: reader.read() for split, reader in open_splits(cfg, splits).items()}


def load_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    """Load one split ("train", "valid" or "test") into memory, cleaned; `max_train_pairs` applies to "train"."""
    return SplitReader(cfg, split).read()


READING_VERSION = 1  # bump when reading or cleaning changes what a file yields: the fingerprints change with it


def fingerprint(cfg: DataConfig, split: str = "train") -> str | None:
    """A hash of a local split's file bytes (read in 1 MB blocks, never as lines) and of the settings that
    shape what is read from them; None for a hub dataset (its `SplitReader.key` needs the dataset loaded).

    It names the caches built from the split (tokenizer, encoded pairs), so that a run whose caches exist
    needs not read the text at all; any change to the files or those settings gives a new fingerprint.
    """
    if cfg.resolved_source != "local" or not cfg.dir:
        return None
    folder, prefix = resolve_data_dir(cfg.dir), _prefix(cfg, split)
    names = {"text": [f"{prefix}.{cfg.src_lang}", f"{prefix}.{cfg.tgt_lang}"], "tsv": [f"{prefix}.tsv"]}
    names["jsonl"] = [f"{prefix}.jsonl"]
    if cfg.format not in names:
        return None
    return files_fingerprint([find_file(folder, name) for name in names[cfg.format]], _reading_settings(cfg, split))


def _reading_settings(cfg: DataConfig, split: str) -> dict[str, Any]:
    settings = {"version": READING_VERSION, "format": cfg.format, "src": cfg.src_lang, "tgt": cfg.tgt_lang}
    if split == "train":
        settings["max_train_pairs"] = cfg.max_train_pairs
    return settings


def resolve_data_dir(path: str) -> Path:
    """An existing folder: absolute as given, relative against the cwd first, then the repository root."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, REPO_ROOT / given]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise CorpusError(f"data folder {path!r} not found; tried {tried}")


def clean_pairs(src: Sequence[str], tgt: Sequence[str], *, where: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Strip both sides and drop pairs with an empty side; log and return the counts.

    Returns (src, tgt, {"total": n, "kept": k, "empty": n - k}).
    """
    if len(src) != len(tgt):
        raise ValueError(f"{where}: {len(src)} source vs {len(tgt)} target sentences")
    chunk = _clean(src, tgt, 0)
    counts = {"total": len(src), "kept": len(chunk), "empty": len(src) - len(chunk)}
    log.info("%s: kept %d of %d pairs (%d with an empty side)", where, counts["kept"], counts["total"], counts["empty"])
    return chunk.src, chunk.tgt, counts


def _clean(src: Sequence[str], tgt: Sequence[str], first_position: int) -> PairChunk:
    """Strip both sides of each pair and keep those with two non-empty sides, with their raw positions."""
    kept_src, kept_tgt, positions = [], [], []
    for position, (s, t) in enumerate(zip(src, tgt), first_position):
        s, t = s.strip(), t.strip()
        if s and t:
            kept_src.append(s)
            kept_tgt.append(t)
            positions.append(position)
    return PairChunk(kept_src, kept_tgt, np.array(positions, dtype=np.int64))


def length_filter(
    src_lengths: Sequence[int] | np.ndarray, tgt_lengths: Sequence[int] | np.ndarray, max_length: int, max_ratio: float
) -> tuple[np.ndarray, dict[str, int]]:
    """A mask of the pairs to keep, and why the others were dropped.

    A pair is "too_long" when either side exceeds `max_length`; otherwise "bad_ratio" when
    max(a, b) / max(1, min(a, b)) exceeds `max_ratio`. Each dropped pair is counted once.
    """
    a, b = np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"{len(a)} source lengths vs {len(b)} target lengths")
    too_long = (a > max_length) | (b > max_length)
    bad_ratio = ~too_long & (np.maximum(a, b) / np.maximum(1, np.minimum(a, b)) > max_ratio)
    keep = ~(too_long | bad_ratio)
    return keep, {"too_long": int(too_long.sum()), "bad_ratio": int(bad_ratio.sum())}


# ------------------------------------------------------------------------------------------------ one split


class SplitReader:
    """One split of the configured corpus, read in chunks of cleaned pairs; never held whole in memory.

    Opening it checks what can be checked up front (the files exist, are UTF-8, and two text files have
    as many lines), counts the raw pairs, and names the split's origin for messages.
    """

    def __init__(self, cfg: DataConfig, split: str, hub: Any | None = None, key: str | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        self.cfg, self.split = cfg, split
        prefix = _prefix(cfg, split)
        source = cfg.resolved_source
        if source == "hub":
            self._raw: _RawSplit = HubSplit(cfg, split, prefix, hub if hub is not None else load_hub_dataset(cfg))
        elif source == "local":
            if not cfg.dir:
                raise CorpusError("data.dir must name a folder when data.source=local")
            self._raw = local_split(cfg, resolve_data_dir(cfg.dir), prefix)
        else:
            raise CorpusError(f"data.source={cfg.source!r} is not supported; use auto, local or hub")
        if key is not None:
            self.__dict__["key"] = key  # the cached_property below, already known

    @property
    def origin(self) -> str:
        return self._raw.origin

    @property
    def raw_pairs(self) -> int:
        return self._raw.raw_pairs

    @cached_property
    def key(self) -> str:
        """The fingerprint of the split's files (local), or of its Arrow data (hub)."""
        return self._raw.fingerprint(_reading_settings(self.cfg, self.split))

    def chunks(self, size: int = CHUNK_PAIRS, desc: str | None = None) -> Iterator[PairChunk]:
        """Cleaned pairs in order; for "train" at most `data.max_train_pairs` of them. Logs the counts at the end."""
        limit = self.cfg.max_train_pairs if self.split == "train" else None
        kept = total = 0
        bar = progress_bar(None, desc, total=self.raw_pairs, unit="pairs")
        for start, (src, tgt) in self._raw.raw_chunks(size):
            chunk = _clean(src, tgt, start)
            total += len(src)
            bar.update(len(src))
            if limit is not None and kept + len(chunk) >= limit:
                cut = limit - kept
                yield PairChunk(chunk.src[:cut], chunk.tgt[:cut], chunk.positions[:cut])
                kept += cut
                break
            kept += len(chunk)
            yield chunk
        bar.close()
        self._log_counts(kept, total, limit)

    def read(self) -> ParallelCorpus:
        """The whole split in memory (for validation and test sets, and small corpora)."""
        src: list[str] = []
        tgt: list[str] = []
        for chunk in self.chunks():
            src.extend(chunk.src)
            tgt.extend(chunk.tgt)
        return ParallelCorpus(src, tgt)

    def _log_counts(self, kept: int, total: int, limit: int | None) -> None:
        where = f"{self.split} ({self.origin})"
        if limit is not None and kept >= limit:
            log.info("%s: using the first %d pairs (data.max_train_pairs) of %d lines read", where, kept, total)
            return
        log.info("%s: kept %d of %d pairs (%d with an empty side)", where, kept, total, total - kept)
        if not kept:
            raise CorpusError(
                f"{where}: no sentence pairs left after cleaning ({total} lines, {total - kept} with an empty side)"
            )


def _prefix(cfg: DataConfig, split: str) -> str:
    return {"train": cfg.train_prefix, "valid": cfg.valid_prefix, "test": cfg.test_prefix}[split]


class _RawSplit(Protocol):
    origin: str
    raw_pairs: int

    def raw_chunks(self, size: int) -> Iterator[tuple[int, tuple[list[str], list[str]]]]:
        """(position of the first pair, (source lines, target lines)) for consecutive raw pairs."""
        ...

    def fingerprint(self, settings: dict[str, Any]) -> str:
        """A hash of the raw pairs' origin (file bytes, or `datasets`' fingerprint) with the reading `settings`."""
        ...


__all__ = [
    "CorpusError",
    "PairChunk",
    "PairSource",
    "ParallelCorpus",
    "SplitReader",
    "clean_pairs",
    "length_filter",
    "load_corpus",
    "load_split",
    "open_splits",
    "resolve_data_dir",
]
