"""Property-based: random Unicode and random bytes through the corpus loader never crash it and never misalign it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import DataConfig
from seq2seq.data.corpus import CorpusError, load_split

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
plain_text = st.text(
    alphabet=st.characters(blacklist_characters=LINE_BREAKS, blacklist_categories=("Cs",)), max_size=30
)


def load(src: bytes, tgt: bytes):
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "train.de").write_bytes(src)
        Path(folder, "train.en").write_bytes(tgt)
        return load_split(DataConfig(dir=folder), "train")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(plain_text, plain_text), min_size=1, max_size=12))
def test_random_unicode_pairs_stay_aligned(pairs):
    src = "".join(s + "\n" for s, _ in pairs).encode()
    tgt = "".join(t + "\n" for _, t in pairs).encode()
    expected = [(s.strip(), t.strip()) for s, t in pairs if s.strip() and t.strip()]
    if not expected:  # nothing left after cleaning: a clear error, not an empty training set
        with pytest.raises(CorpusError, match="no sentence pairs left"):
            load(src, tgt)
        return
    corpus = load(src, tgt)
    assert list(zip(corpus.src, corpus.tgt)) == expected


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_random_bytes_give_aligned_pairs_or_a_clear_error(src, tgt):
    try:
        corpus = load(src, tgt)
    except CorpusError as exc:
        assert "train." in str(exc)  # names the file
    else:
        assert len(corpus.src) == len(corpus.tgt)
        assert all(s.strip() == s and s for s in corpus.src + corpus.tgt)
