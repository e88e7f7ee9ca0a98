"""Large corpora: split readers stream chunks, encoding runs in worker processes, nothing is read twice that
the caches already hold. Every corpus here is tiny; the chunk size is shrunk to make several chunks."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from seq2seq.config import Config, DataConfig
from seq2seq.data import corpus as corpus_module
from seq2seq.data import local_files
from seq2seq.data.corpus import CorpusError, ParallelCorpus, SplitReader, load_split
from seq2seq.data.encoded import encode_training_set
from seq2seq.data.prepare import prepare_data

from .tiny_models import tiny_tokenizer, write_corpus


def local(folder: Path, **values: object) -> DataConfig:
    return DataConfig(**{"source": "local", "dir": str(folder), "cache_dir": None, **values})  # type: ignore[arg-type]


def write_pair(folder: Path, src: str, tgt: str, prefix: str = "train", gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, content in (("de", src), ("en", tgt)):
        path = folder / f"{prefix}.{lang}{'.gz' if gz else ''}"
        if gz:
            with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
                f.write(content)
        else:
            path.write_bytes(content.encode())


@pytest.mark.parametrize("gz", [False, True])
def test_chunks_carry_cleaned_pairs_and_their_raw_positions(tmp_path, gz):
    write_pair(tmp_path, "\ufeffa\n\n c \r\nd\re\nf", "A\nB\nC\n \nE\nF\n", gz=gz)
    reader = SplitReader(local(tmp_path), "train")
    assert reader.raw_pairs == 6  # "\r\n" and a lone "\r" end a line; the last line has no newline
    chunks = list(reader.chunks(size=2))
    assert [c.src for c in chunks] == [["a"], ["c"], ["e", "f"]]
    assert [c.positions.tolist() for c in chunks] == [[0], [2], [4, 5]]
    whole = reader.read()
    assert (whole.src, whole.tgt) == (["a", "c", "e", "f"], ["A", "C", "E", "F"])


def test_max_train_pairs_stops_reading_within_a_chunk(tmp_path, caplog):
    write_pair(tmp_path, "".join(f"s{i}\n" for i in range(10)), "".join(f"t{i}\n" for i in range(10)))
    reader = SplitReader(local(tmp_path, max_train_pairs=5), "train")
    with caplog.at_level(logging.INFO, logger="seq2seq.data.corpus"):
        chunks = list(reader.chunks(size=3))
    assert [c.src for c in chunks] == [["s0", "s1", "s2"], ["s3", "s4"]]
    assert "using the first 5 pairs (data.max_train_pairs)" in caplog.text
    assert load_split(local(tmp_path, max_train_pairs=5), "train").src[-1] == "s4"


def test_line_counts_are_compared_before_anything_is_read(tmp_path, monkeypatch):
    write_pair(tmp_path, "a\nb\nc\n", "A\nB\n")
    monkeypatch.setattr(local_files, "_open_text", lambda path: pytest.fail("read before the check"))
    with pytest.raises(CorpusError, match=r"train\.de has 3 lines but .*train\.en has 2"):
        SplitReader(local(tmp_path), "train")


def test_tsv_errors_name_the_line_in_a_later_chunk(tmp_path):
    tmp_path.joinpath("train.tsv").write_text("".join(f"s{i}\tt{i}\n" for i in range(7)) + "no tab\n")
    reader = SplitReader(local(tmp_path, format="tsv"), "train")
    with pytest.raises(CorpusError, match=r"train\.tsv, line 8: no tab"):
        list(reader.chunks(size=3))


def test_jsonl_errors_name_the_line_in_a_later_chunk(tmp_path):
    records = [f'{{"de": "s{i}", "en": "t{i}"}}\n' for i in range(7)] + ['{"de": "s7"}\n']
    tmp_path.joinpath("train.jsonl").write_text("".join(records))
    reader = SplitReader(local(tmp_path, format="jsonl"), "train")
    assert reader.raw_pairs == 8
    with pytest.raises(CorpusError, match=r"line 8: no string for 'en'"):
        list(reader.chunks(size=3))


@pytest.fixture(scope="module")
def tokenizer():
    """A joint model of 150 pieces on 500 embedded pairs, whatever corpus a test encodes with it."""
    return tiny_tokenizer(vocab_size=150, joint=True, pairs=500)


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_processes_and_chunks_do_not_change_the_arrays(tmp_path, monkeypatch, workers):
    folder = write_corpus(tmp_path / "corpus", train=1500)
    reader = SplitReader(local(folder), "train")
    text = reader.read()
    tokenizer = tiny_tokenizer(vocab_size=200, joint=True, pairs=1500)  # what build_tokenizer trains on `text`
    reference = encode_training_set(text, tokenizer, DataConfig(cache_dir=None, preprocess_workers=0))
    monkeypatch.setattr(corpus_module, "CHUNK_PAIRS", 100)
    streamed = encode_training_set(
        _Chunked(reader, 100), tokenizer, local(folder, cache_dir=str(tmp_path / "data"), preprocess_workers=workers)
    )
    for name in ("src", "src_offsets", "tgt", "tgt_offsets"):
        assert np.array_equal(getattr(reference, name), getattr(streamed, name)), name
    assert len(streamed) == len(text) and isinstance(streamed.src, np.memmap)


class _Chunked:
    """A reader whose chunks are small, so that the pool sees many of them."""

    def __init__(self, reader: SplitReader, size: int) -> None:
        self.reader, self.size = reader, size
        self.key, self.raw_pairs = reader.key, reader.raw_pairs

    def chunks(self, size: int = 0, desc: str | None = None):
        return self.reader.chunks(self.size, desc)


def test_a_first_run_never_holds_the_training_text_whole(tmp_path, monkeypatch):
    folder = write_corpus(tmp_path / "corpus", train=800)
    config = Config.from_dict(
        {
            "data": {"dir": str(folder), "cache_dir": str(tmp_path / "data")},
            "tokenizer": {"vocab_size": 150, "cache_dir": str(tmp_path / "spm")},
        }
    )
    real_read = SplitReader.read

    def read(self):
        if self.split == "train":
            pytest.fail("the training split was read into memory")
        return real_read(self)

    monkeypatch.setattr(SplitReader, "read", read)
    monkeypatch.setattr(ParallelCorpus, "__init__", _refuse_big(ParallelCorpus.__init__))
    prepared = prepare_data(config)
    assert len(prepared.train) > 700 and len(prepared.valid) == 20


def _refuse_big(init):
    def guarded(self, src, tgt):
        if len(src) > 100:
            pytest.fail(f"a ParallelCorpus of {len(src)} pairs was built")
        init(self, src, tgt)

    return guarded


def test_a_reading_error_in_a_later_chunk_reaches_the_caller_through_the_workers(tmp_path, tokenizer):
    rows = "".join(f"Satz {i}\tsentence {i}\n" for i in range(250)) + "no tab\n"
    tmp_path.joinpath("train.tsv").write_text(rows)
    reader = SplitReader(local(tmp_path, format="tsv"), "train")
    cfg = local(tmp_path, format="tsv", cache_dir=str(tmp_path / "data"), preprocess_workers=2)
    with pytest.raises(CorpusError, match=r"train\.tsv, line 251: no tab"):
        encode_training_set(_Chunked(reader, 20), tokenizer, cfg)
    assert not [p for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")]  # nothing half-built


def test_encoding_workers_drop_the_training_process_signal_handlers(tokenizer):
    """Workers forked during training (subword sampling) would otherwise log "SIGTERM received" and live on."""
    import signal

    from seq2seq.data import encoded

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGTERM, lambda *a: None)
        encoded._start_worker(encoded.ChunkEncoder, tokenizer.to_dict(), (100, 3.0))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        encoded._worker_encoder = None
