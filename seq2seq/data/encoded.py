"""The encoded training set: token ids in flat arrays plus offsets, built once and memory-mapped after.

Encoding a large corpus with SentencePiece takes minutes and, kept as Python lists, gigabytes in every
process. `encode_training_set` does it once per (corpus, tokenizer, length filter) and writes

    CACHE_DIR/KEY/src.npy            int32 (all source tokens,): sentence i is src[src_offsets[i]:src_offsets[i + 1]]
    CACHE_DIR/KEY/src_offsets.npy    int64 (pairs + 1,)
    CACHE_DIR/KEY/tgt.npy, tgt_offsets.npy
    CACHE_DIR/KEY/positions.npy      int64 (pairs,): each kept pair's index among the split's raw pairs
    CACHE_DIR/KEY/meta.json          what was built and what the length filter dropped

The corpus is streamed in chunks of cleaned pairs; worker processes (`data.preprocess_workers`, one
per core by default) encode them with a word cache (`tokenizer.WordCache`) and the length filter, and
this process appends their arrays to the files, so neither the text nor the ids are ever held whole.
Every later run (a resume, each torchrun rank, each job of a sweep) maps the same files with
`numpy.load(mmap_mode="r")`: the pages are shared through the OS page cache, not copied per process.
KEY hashes the corpus (`corpus.key`: the files' bytes), the SentencePiece model(s) and the filter
settings, so a change to any of them builds a new cache. A cache is built in a temporary folder and
renamed into place only when complete, so a build that is killed is never read, and of two processes
building the same cache at once one rename wins and the other process uses the winner's files.

Subword regularization (`tokenizer.sampling_alpha` > 0) re-encodes the kept pairs (`positions.npy`) at
every epoch with a sampled segmentation, in memory, by the same worker processes (`encoded_chunks`):
`seq2seq.data.sampled`. The cache still decides which pairs train (the deterministic segmentation and the
length filter).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.config import DataConfig
from seq2seq.data.corpus import CorpusError, PairChunk, PairSource, length_filter
from seq2seq.data.tokenizer import Tokenizer, WordCache, flatten, prepend
from seq2seq.files import current_umask

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: positions.npy
ARRAYS = ("src", "src_offsets", "tgt", "tgt_offsets")


@dataclass
class EncodedCorpus:
    """Parallel token-id sequences in two flat arrays with offsets (in memory, or mapped from the cache)."""

    src: np.ndarray  # (source tokens,) int32
    src_offsets: np.ndarray  # (pairs + 1,) int64
    tgt: np.ndarray  # (target tokens,) int32
    tgt_offsets: np.ndarray  # (pairs + 1,) int64
    positions: np.ndarray | None = None  # (pairs,) int64: each pair's index among the split's raw pairs, if known
    parts: tuple[int, ...] | None = None  # several training corpora: the pairs of each, one corpus after another

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def pairs(self, indices: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The source and target id arrays of the pairs `indices` (views into the arrays, nothing copied)."""
        so, to = self.src_offsets, self.tgt_offsets
        return [self.src[so[i] : so[i + 1]] for i in indices], [self.tgt[to[i] : to[i + 1]] for i in indices]

    @classmethod
    def from_lists(cls, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> EncodedCorpus:
        (src_flat, src_lengths), (tgt_flat, tgt_lengths) = flatten(src), flatten(tgt)
        return cls(src_flat, offsets([src_lengths]), tgt_flat, offsets([tgt_lengths]))

    def save(self, folder: Path) -> None:
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))
        if self.positions is not None:
            np.save(folder / "positions.npy", self.positions)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> EncodedCorpus:
        """The arrays in `folder`, memory-mapped (or read, `mmap=False`); positions when positions.npy is there,
        and the pairs per corpus when meta.json lists several corpora."""
        mode = "r" if mmap else None
        arrays = [np.load(folder / f"{name}.npy", mmap_mode=mode) for name in ARRAYS]
        positions = folder / "positions.npy"
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
        parts = tuple(c["kept"] for c in meta["corpora"]) if meta.get("corpora") else None
        return cls(*arrays, np.load(positions, mmap_mode=mode) if positions.is_file() else None, parts)


def offsets(lengths: list[np.ndarray]) -> np.ndarray:
    """Row lengths (in parts) -> where each row starts in the flat array, plus the end: (rows + 1,) int64."""
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    starts = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=starts[1:])
    return starts


def encode_training_set(corpus: PairSource, tokenizer: Tokenizer, cfg: DataConfig) -> EncodedCorpus:
    """The training pairs encoded and length-filtered: from the cache in `data.cache_dir`, built there if missing.

    `corpus.key` (for local files a fingerprint of their bytes) names the corpus in the cache key. With
    `data.cache_dir=null` the arrays are built in memory and nothing is written.
    """
    if cfg.cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="seq2seq-encoded-") as tmp:
            meta = _encode_into(Path(tmp), corpus, tokenizer, cfg)
            encoded = EncodedCorpus.load(Path(tmp), mmap=False)
        _log_filter(len(encoded), meta["dropped"], cfg)
        return encoded
    folder = Path(cfg.cache_dir).expanduser() / cache_key(corpus.key, tokenizer, cfg)
    if (folder / "meta.json").is_file():
        log.info("train: encoded pairs from the cache %s", folder)
    else:
        _build(folder, corpus, tokenizer, cfg)
    return _load(folder, cfg)


def cached_training_set(source_key: str, tokenizer: Tokenizer, cfg: DataConfig) -> EncodedCorpus | None:
    """The pairs `encode_training_set` cached earlier for a corpus whose key is `source_key`, found without
    the text; or None."""
    if cfg.cache_dir is None:
        return None
    folder = Path(cfg.cache_dir).expanduser() / cache_key(source_key, tokenizer, cfg)
    if not (folder / "meta.json").is_file():
        return None
    log.info("train: encoded pairs from the cache %s (the training text was not read)", folder)
    return _load(folder, cfg)


def _load(folder: Path, cfg: DataConfig) -> EncodedCorpus:
    meta = json.loads((folder / "meta.json").read_text())
    encoded = EncodedCorpus.load(folder)
    _log_filter(len(encoded), meta["dropped"], cfg)
    return encoded


def cache_key(corpus_key: str, tokenizer: Tokenizer, cfg: DataConfig) -> str:
    """A hash of everything the encoded arrays depend on: the corpus (its key), the subword model(s), the
    length filter."""
    settings = {"version": FORMAT_VERSION, "max_length": cfg.max_length, "max_length_ratio": cfg.max_length_ratio}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for model in tokenizer.to_dict().values():
        digest.update(b"\x00model\x00" + (model or b""))
    digest.update(b"\x00corpus\x00" + corpus_key.encode())
    return digest.hexdigest()[:20]


def _build(folder: Path, corpus: PairSource, tokenizer: Tokenizer, cfg: DataConfig) -> None:
    """Encode into a temporary folder beside `folder`, then rename it into place (atomic on one file system)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the cache from other users
    try:
        _encode_into(tmp, corpus, tokenizer, cfg)
        for path in tmp.iterdir():  # durable before the rename makes them visible
            with path.open("rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same cache first: use its files
            if not (folder / "meta.json").is_file():
                raise
            log.info("train: another process built %s first; using it", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _encode_into(folder: Path, corpus: PairSource, tokenizer: Tokenizer, cfg: DataConfig) -> dict[str, Any]:
    """Stream the corpus through the encoder (in worker processes when there are several cores) and append
    every chunk's arrays to the files in `folder`; write meta.json last. Returns the meta."""
    workers = worker_count(cfg)
    started = time.perf_counter()
    log.info(
        "train: encoding %d pairs into %s (%s)",
        corpus.raw_pairs,
        folder,
        f"{workers} worker processes" if workers else "in this process",
    )
    dropped = {"too_long": 0, "bad_ratio": 0}
    read = 0
    corpora = [{"read": 0, "kept": 0, "too_long": 0, "bad_ratio": 0} for _ in getattr(corpus, "corpora", ())]
    lengths: dict[str, list[np.ndarray]] = {"src": [], "tgt": []}
    positions: list[np.ndarray] = []
    chunks = corpus.chunks(desc="encoding the training set" if corpus.raw_pairs > 200_000 else None)
    src_file, tgt_file = _ArrayFile(folder / "src.npy"), _ArrayFile(folder / "tgt.npy")
    encoder = (ChunkEncoder, (cfg.max_length, cfg.max_length_ratio))
    with src_file, tgt_file, encoded_chunks(chunks, *encoder, tokenizer, workers) as results:
        for result in results:
            src_file.append(result.src)
            tgt_file.append(result.tgt)
            lengths["src"].append(result.src_lengths)
            lengths["tgt"].append(result.tgt_lengths)
            positions.append(result.positions)
            read += result.read
            for reason, count in result.dropped.items():
                dropped[reason] += count
            if corpora:
                counts = corpora[result.corpus]
                counts["read"] += result.read
                counts["kept"] += len(result.src_lengths)
                for reason, count in result.dropped.items():
                    counts[reason] += count
    for side in ("src", "tgt"):
        np.save(folder / f"{side}_offsets.npy", offsets(lengths[side]))
    np.save(folder / "positions.npy", np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64))
    pairs = sum(len(part) for part in lengths["src"])
    meta: dict[str, Any] = {"version": FORMAT_VERSION, "pairs": pairs, "read": read, "dropped": dropped}
    if corpora:  # several training corpora (`seq2seq.data.combined`): what each one gave, in order
        meta["corpora"] = [{"name": c.name, **counts} for c, counts in zip(corpus.corpora, corpora)]  # type: ignore[attr-defined]
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    seconds = time.perf_counter() - started
    log.info("train: encoded %d pairs in %.1fs (%.0f pairs/s)", read, seconds, read / max(seconds, 1e-9))
    return meta


def worker_count(cfg: DataConfig) -> int:
    """Encoding processes: `data.preprocess_workers`, by default one per core (0 on a single core)."""
    if cfg.preprocess_workers is not None:
        return cfg.preprocess_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if cores > 1 else 0


@dataclass
class EncodedChunk:
    """One chunk of pairs, encoded and length-filtered."""

    src: np.ndarray  # (source tokens,) int32
    src_lengths: np.ndarray  # (pairs kept,) int64
    tgt: np.ndarray
    tgt_lengths: np.ndarray
    read: int  # pairs in the chunk before the length filter
    dropped: dict[str, int]
    positions: np.ndarray  # (pairs kept,) int64: their indices among the split's raw pairs
    corpus: int = 0  # the training corpus they come from


class ChunkEncoder:
    """Encode chunks of cleaned pairs (with a word cache per side, the chunk's source tags first) and apply
    the length filter (which counts the tags)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, max_ratio: float) -> None:
        self.src = WordCache(tokenizer.src)
        self.tgt = self.src if tokenizer.joint else WordCache(tokenizer.tgt)
        self.tags = tokenizer.tags
        self.max_length, self.max_ratio = max_length, max_ratio

    def __call__(self, chunk: PairChunk) -> EncodedChunk:
        (src, src_lengths), (tgt, tgt_lengths) = self.src.encode(chunk.src), self.tgt.encode(chunk.tgt)
        src, src_lengths = prepend(src, src_lengths, [self.tags[tag] for tag in chunk.tags])
        keep, dropped = length_filter(src_lengths, tgt_lengths, self.max_length, self.max_ratio)
        if not keep.all():
            src = src[np.repeat(keep, src_lengths)]
            tgt = tgt[np.repeat(keep, tgt_lengths)]
            src_lengths, tgt_lengths = src_lengths[keep], tgt_lengths[keep]
        return EncodedChunk(
            src, src_lengths, tgt, tgt_lengths, len(chunk), dropped, chunk.positions[keep], chunk.corpus
        )


_worker_encoder: Callable[[Any], EncodedChunk] | None = None  # one per worker process


def _start_worker(encoder: Callable[..., Any], models: dict[str, bytes | None], settings: tuple[Any, ...]) -> None:
    """A worker forked from a training process must not keep its signal handlers (`stopping.stop_on_signals`):
    SIGTERM, which the pool sends when it closes, ends the worker, and Ctrl-C is for the training process."""
    global _worker_encoder
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_encoder = encoder(Tokenizer.from_dict(models), *settings)


def _encode_in_worker(task: Any) -> EncodedChunk:
    assert _worker_encoder is not None
    return _worker_encoder(task)


@contextlib.contextmanager
def encoded_chunks(
    tasks: Iterator[Any], encoder: Callable[..., Any], settings: tuple[Any, ...], tokenizer: Tokenizer, workers: int
) -> Iterator[Iterator[EncodedChunk]]:
    """The tasks (chunks) encoded in order by `encoder(tokenizer, *settings)`: one in each of `workers`
    processes (this one reads and writes meanwhile), or one here."""
    if workers == 0:
        yield map(encoder(tokenizer, *settings), tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)  # fork: no re-imports
    init = (encoder, tokenizer.to_dict(), settings)
    # Pool.imap reads its input as fast as it can: without a bound, the whole corpus would wait in memory
    # for the workers. At most two tasks per worker are read ahead of the results taken.
    ahead = threading.BoundedSemaphore(2 * workers)

    def bounded(items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            ahead.acquire()
            yield item

    def taken(results: Iterator[EncodedChunk]) -> Iterator[EncodedChunk]:
        for result in results:
            ahead.release()
            yield result

    pool = context.Pool(workers, initializer=_start_worker, initargs=init)
    try:
        yield taken(pool.imap(_encode_in_worker, bounded(tasks)))
        pool.close()  # every result is in: the workers end on their own, no signal needed
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


class _ArrayFile:
    """A 1-D .npy file written in appended parts: a fixed-size header slot first, the real header at close."""

    HEADER = 128  # bytes: room for the header of any 1-D int array (np.load accepts any padding)

    def __init__(self, path: Path) -> None:
        self.path, self.dtype, self.count = path, np.dtype(np.int32), 0
        self.file = path.open("wb")
        self.file.write(b"\x00" * self.HEADER)

    def append(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.count += len(values)

    def __enter__(self) -> _ArrayFile:
        return self

    def __exit__(self, *exc: object) -> None:
        header = repr(
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.count,)}
        )
        size = self.HEADER - 10  # after the 6-byte magic, the version (2 bytes) and the header length (2 bytes)
        if len(header) >= size:
            raise ValueError(f"npy header {header!r} does not fit its {self.HEADER}-byte slot")
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + size.to_bytes(2, "little") + header.ljust(size - 1).encode() + b"\n")
        self.file.close()


def _log_filter(pairs: int, dropped: dict[str, int], cfg: DataConfig) -> None:
    log.info(
        "train: %d pairs after length filtering (dropped %d over data.max_length=%d, %d over data.max_length_ratio=%g)",
        *(pairs, dropped.get("too_long", 0), cfg.max_length, dropped.get("bad_ratio", 0), cfg.max_length_ratio),
    )
    if not pairs:
        raise CorpusError(
            "no training pairs left after length filtering; raise data.max_length or data.max_length_ratio"
        )
