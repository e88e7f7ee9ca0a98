"""SentencePiece subword models: trained once on the training split, cached, and carried in checkpoints.

Every model uses the same special ids (`seq2seq.vocab`), so batches and search never need to ask:
pad = 0, unk = 1, bos = 2, eos = 3.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sentencepiece as spm

from seq2seq.config import TAG_PATTERN, TokenizerConfig, target_tag
from seq2seq.files import write_atomic
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.data.corpus import PairSource

log = logging.getLogger(__name__)


class Tokenizer:
    """Source and target SentencePiece processors (the same object when `joint`).

    The source model may hold tags (<BT>, <2fr>: `seq2seq.data.combined`), user-defined pieces placed right
    after the special ids; a source line that starts with tags (`<2fr> Ein Mann ...`) is encoded as their
    ids followed by the rest of the line's pieces, as the training pairs were.
    """

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None) -> None:
        self.joint = tgt_model is None
        self._src_bytes = src_model
        self._tgt_bytes = tgt_model
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = self.src if tgt_model is None else spm.SentencePieceProcessor(model_proto=tgt_model)

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    @cached_property
    def tags(self) -> dict[str, int]:
        """The source model's tags and their ids: the run of pieces in angle brackets after the special ids."""
        tags, i = {}, EOS_ID + 1
        while i < self.src.get_piece_size() and TAG_PATTERN.fullmatch(piece := self.src.id_to_piece(i)):
            tags[piece] = i
            i += 1
        return tags

    @property
    def target_languages(self) -> list[str]:
        """The output languages a multilingual model can be asked for: xx of its <2xx> tags (`data.target_tags`)."""
        return [tag[2:-1] for tag in self.tags if tag.startswith("<2")]

    @cached_property
    def continues_word(self) -> list[bool]:
        """Per target id: whether its piece goes on with the word before it (`continues_word_table`)."""
        return continues_word_table([self.tgt.id_to_piece(i) for i in range(self.tgt_vocab_size)])

    def with_target_language(self, lines: Sequence[str], lang: str) -> list[str]:
        """`lines` asking for output in `lang` (its tag <2lang> first; empty lines stay empty); ValueError
        naming the languages there are when the model was not trained to write `lang`."""
        if lang not in self.target_languages:
            if not self.target_languages:
                raise ValueError(
                    f"target language {lang!r}: this model has one output language (it was trained without "
                    "data.target_tags)"
                )
            raise ValueError(
                f"unknown target language {lang!r}: this model translates into {', '.join(self.target_languages)}"
            )
        return [f"{target_tag(lang)} {line}" if line.strip() else line for line in lines]

    def split_tags(self, line: str) -> tuple[list[int], str]:
        """(the ids of the tags `line` starts with, the rest of the line)."""
        ids: list[int] = []
        if not self.tags:
            return ids, line
        rest = line.lstrip()
        while rest.startswith("<"):
            word, _, after = rest.partition(" ")
            if word not in self.tags:
                break
            ids.append(self.tags[word])
            rest = after.lstrip()
        return ids, rest if ids else line

    def encode_src(self, lines: Sequence[str]) -> list[list[int]]:
        if not self.tags:
            return self.src.encode(list(lines), out_type=int)
        split = [self.split_tags(line) for line in lines]
        rest = self.src.encode([text for _, text in split], out_type=int)
        return [tags + ids for (tags, _), ids in zip(split, rest)]

    def encode_tgt(self, lines: Sequence[str]) -> list[list[int]]:
        return self.tgt.encode(list(lines), out_type=int)

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenize target ids (special ids are dropped) back to plain text."""
        return [self.tgt.decode([int(i) for i in seq if i > EOS_ID]) for seq in ids]

    def src_pieces(self, line: str) -> list[str]:
        tags, rest = self.split_tags(line)
        return [self.src.id_to_piece(i) for i in tags] + self.src.encode(rest, out_type=str)

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tgt.id_to_piece(int(i)) for i in ids]

    def to_dict(self) -> dict[str, bytes | None]:
        """Plain bytes, so the tokenizer travels in a `weights_only` checkpoint."""
        return {"src": self._src_bytes, "tgt": self._tgt_bytes}

    @classmethod
    def from_dict(cls, state: dict[str, bytes | None]) -> Tokenizer:
        src = state["src"]
        if not isinstance(src, bytes):
            raise ValueError("tokenizer state must hold the SentencePiece model as bytes under 'src'")
        return cls(src, state.get("tgt"))


class WordCache:
    """Encode the lines of a large corpus word by word, each distinct word segmented once.

    SentencePiece splits the normalized text at whitespace before it segments (no piece crosses a word
    boundary), so a line's ids are its words' ids one after another. Real corpora are Zipfian: after a few
    thousand lines nearly every word has been seen, and a line costs a few dictionary lookups instead of a
    segmentation. A word that normalization changes (a tab or other space, a compatibility character, the
    "▁" symbol itself) is not trusted: a line that holds one is encoded whole. Either way the result equals
    `processor.encode(line)` (tests/test_tokenizer.py checks it over whole corpora).
    """

    def __init__(self, processor: spm.SentencePieceProcessor) -> None:
        self.sp = processor
        self.index: dict[str, int] = {"": 0}  # word -> row of the tables below ("" between two spaces: no pieces)
        self._lengths, self._starts, self._safe, self._pieces = [0], [0], [True], []
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # The shortcut needs SentencePiece's defaults: a dummy prefix and collapsed runs of spaces.
        self.enabled = processor.normalize("ab  cd") == "\u2581ab\u2581cd"

    def encode(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Lines (stripped, non-empty) -> (all their ids one after another, int32; each line's length, int64)."""
        if not self.enabled:
            return flatten(self.sp.encode(list(lines), out_type=int))
        words = " ".join(lines).split(" ")  # line i holds the next count(" ") + 1 words ("" between two spaces)
        words_per_line = np.fromiter((line.count(" ") + 1 for line in lines), dtype=np.int64, count=len(lines))
        new = set(words).difference(self.index)
        if new:
            self._add(sorted(new))
        word_rows = np.fromiter(map(self.index.__getitem__, words), dtype=np.int64, count=len(words))  # (words,)
        lengths, starts, safe, pieces = self._arrays()
        word_lengths = lengths[word_rows]  # (words,) pieces per word
        line_of_word = np.repeat(np.arange(len(lines)), words_per_line)  # (words,)
        line_lengths = np.bincount(line_of_word, weights=word_lengths, minlength=len(lines)).astype(np.int64)
        # piece j of word w sits at starts[w] + j in `pieces`: one gather builds every line
        first_out = np.cumsum(word_lengths) - word_lengths
        flat = pieces[np.repeat(starts[word_rows] - first_out, word_lengths) + np.arange(int(word_lengths.sum()))]
        untrusted = np.flatnonzero(np.bincount(line_of_word, weights=~safe[word_rows], minlength=len(lines)))
        if len(untrusted):
            flat, line_lengths = self._encode_whole(lines, untrusted, flat, line_lengths)
        return flat.astype(np.int32), line_lengths

    def _add(self, words: list[str]) -> None:
        for word, ids, normalized in zip(words, self.sp.encode(words, out_type=int), self.sp.normalize(words)):
            self.index[word] = len(self._lengths)
            self._lengths.append(len(ids))
            self._starts.append(len(self._pieces))
            self._safe.append(normalized == "\u2581" + word and "\u2581" not in word)
            self._pieces.extend(ids)
        self._tables = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._tables is None:
            self._tables = (
                np.array(self._lengths, dtype=np.int64),
                np.array(self._starts, dtype=np.int64),
                np.array(self._safe, dtype=bool),
                np.array(self._pieces, dtype=np.int32),
            )
        return self._tables

    def _encode_whole(
        self, lines: Sequence[str], which: np.ndarray, flat: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Replace the ids of lines `which` by SentencePiece's encoding of each whole line."""
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rows = [flat[offsets[i] : offsets[i + 1]] for i in range(len(lines))]
        for i, ids in zip(which.tolist(), self.sp.encode([lines[i] for i in which.tolist()], out_type=int)):
            rows[i] = np.array(ids, dtype=np.int32)
        return flatten(rows)


def continues_word_table(pieces: Sequence[str]) -> list[bool]:
    """Per piece: whether it continues the word before it (no leading "▁", and a letter or digit first), so
    that a required phrase completed just before it is not on a word boundary (`seq2seq.decoding.steering`)."""
    return [bool(p) and not p.startswith("\u2581") and p[0].isalnum() for p in pieces]


def prepend(flat: np.ndarray, lengths: np.ndarray, prefix: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The same rows with the ids `prefix` before each: (flat ids, int32; row lengths, int64), as `flatten`."""
    k, rows = len(prefix), len(lengths)
    if not k:
        return flat, lengths
    new_lengths = lengths + k
    starts = np.zeros(rows, dtype=np.int64)  # (rows,) where each new row starts
    np.cumsum(new_lengths[:-1], out=starts[1:])
    out = np.empty(len(flat) + k * rows, dtype=np.int32)
    row_of_id = np.repeat(np.arange(rows), lengths)  # (ids,)
    out[np.arange(len(flat)) + k * (row_of_id + 1)] = flat
    for j, tag in enumerate(prefix):
        out[starts + j] = tag
    return out, new_lengths


def flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids -> (all ids one after another as int32, each row's length as int64)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def train_sentencepiece(lines: Iterable[str], cfg: TokenizerConfig, tags: Sequence[str] = ()) -> bytes:
    """Train one SentencePiece model in memory on `lines` and return its serialized proto; `tags` become
    user-defined symbols (one piece each, ids right after the special ones)."""
    model = io.BytesIO()
    extra = {"user_defined_symbols": list(tags)} if tags else {}
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type=cfg.type,
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        hard_vocab_limit=False,  # small corpora cannot always fill vocab_size; take what there is
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=cfg.sample_sentences,  # the sample below is never larger: a no-op kept for old models
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
        **extra,
    )
    return model.getvalue()


def build_tokenizer(corpus: PairSource, cfg: TokenizerConfig, tags: Sequence[str] = ()) -> Tokenizer:
    """Train (or load from the cache) the subword model(s) for this corpus and these settings; `tags`: the
    source tags of the training corpora, user-defined symbols of the source (or joint) model.

    The cache key hashes the settings and `corpus.key` (a fingerprint of the files, see `corpus.fingerprint`,
    or of the text itself for a corpus in memory): a change to either trains a new model, and an unchanged
    run reuses the old one. SentencePiece trains on at most `tokenizer.sample_sentences` sentences per model:
    all of them for a corpus that small (source lines, then target lines for a joint model), else a seeded
    random sample of pairs, streamed from the corpus into temporary files.
    """
    paths = _cache_paths(cfg, _cache_key(corpus.key, cfg, tags))
    cached = _load_cached(paths)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="seq2seq-spm-") as tmp:
        sample = write_sample(corpus, cfg.sample_sentences // 2 if cfg.joint else cfg.sample_sentences, Path(tmp))
        log.info(
            "tokenizer: training %s SentencePiece %s model(s), vocab_size=%d, on %s of %d pairs",
            "a joint" if cfg.joint else "separate",
            cfg.type,
            cfg.vocab_size,
            f"a random sample of {sample.pairs}" if sample.sampled else f"all {sample.pairs}",
            corpus.raw_pairs,
        )
        if cfg.joint:
            models = {"joint": train_sentencepiece(itertools.chain(sample.lines(0), sample.lines(1)), cfg, tags)}
        else:
            models = {
                "src": train_sentencepiece(sample.lines(0), cfg, tags),
                "tgt": train_sentencepiece(sample.lines(1), cfg),
            }
    for side, data in models.items():
        write_atomic(paths[side], data)
    tokenizer = Tokenizer(models["joint"]) if cfg.joint else Tokenizer(models["src"], models["tgt"])
    log.info("tokenizer: source vocab %d, target vocab %d", tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    return tokenizer


@dataclass
class Sample:
    """The pairs SentencePiece trains on, one file per side (one sentence a line)."""

    files: tuple[Path, Path]
    pairs: int
    sampled: bool  # False: every pair of the corpus

    def lines(self, side: int) -> Iterator[str]:
        with self.files[side].open(encoding="utf-8") as f:
            for line in f:
                yield line[:-1]


def write_sample(corpus: PairSource, max_pairs: int, folder: Path, seed: int = 0) -> Sample:
    """Stream the corpus once and write every pair, or a seeded random `max_pairs` of its raw pairs (those
    that survive cleaning), to `folder`/src.txt and tgt.txt. A line break inside a sentence becomes a space."""
    chosen: np.ndarray | None = None  # (raw_pairs,) bool
    if corpus.raw_pairs > max_pairs:
        chosen = np.zeros(corpus.raw_pairs, dtype=bool)
        chosen[np.random.default_rng(seed).choice(corpus.raw_pairs, size=max_pairs, replace=False)] = True
    files = (folder / "src.txt", folder / "tgt.txt")
    pairs = 0
    with files[0].open("w", encoding="utf-8") as src, files[1].open("w", encoding="utf-8") as tgt:
        desc = "sampling for SentencePiece" if chosen is not None else "reading for SentencePiece"
        for chunk in corpus.chunks(desc=desc if corpus.raw_pairs > 1_000_000 else None):
            keep = range(len(chunk)) if chosen is None else np.flatnonzero(chosen[chunk.positions]).tolist()
            src.writelines(_one_line(chunk.src[i]) for i in keep)
            tgt.writelines(_one_line(chunk.tgt[i]) for i in keep)
            pairs += len(keep)
    return Sample(files, pairs, chosen is not None)


def _one_line(sentence: str) -> str:
    if "\n" in sentence or "\r" in sentence:
        sentence = " ".join(sentence.splitlines())
    return sentence + "\n"


def cached_tokenizer(source_key: str, cfg: TokenizerConfig, tags: Sequence[str] = ()) -> Tokenizer | None:
    """The tokenizer `build_tokenizer` trained earlier on a corpus whose key is `source_key`, found without
    the text; or None."""
    return _load_cached(_cache_paths(cfg, _cache_key(source_key, cfg, tags)))


def _cache_paths(cfg: TokenizerConfig, key: str) -> dict[str, Path]:
    cache = Path(cfg.cache_dir).expanduser()
    return {side: cache / f"{key}.{side}.model" for side in (("joint",) if cfg.joint else ("src", "tgt"))}


def _load_cached(paths: dict[str, Path]) -> Tokenizer | None:
    """The cached model(s) at `paths` (logged), or None when any is missing."""
    if not all(p.is_file() for p in paths.values()):
        return None
    models = {side: p.read_bytes() for side, p in paths.items()}
    tokenizer = Tokenizer(models["joint"]) if "joint" in models else Tokenizer(models["src"], models["tgt"])
    log.info("tokenizer: reusing cached SentencePiece model(s) %s", ", ".join(str(p) for p in paths.values()))
    log.info("tokenizer: source vocab %d, target vocab %d", tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    return tokenizer


def _cache_key(corpus_key: str, cfg: TokenizerConfig, tags: Sequence[str] = ()) -> str:
    settings: dict[str, object] = {
        "type": cfg.type,
        "vocab_size": cfg.vocab_size,
        "joint": cfg.joint,
        "character_coverage": cfg.character_coverage,
        "sample_sentences": cfg.sample_sentences,
        "spm": spm.__version__,
    }
    if tags:  # (absent without tags: the keys of earlier models stay valid)
        settings["tags"] = list(tags)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(b"\x00corpus\x00" + corpus_key.encode())
    return digest.hexdigest()[:20]
