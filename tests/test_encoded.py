"""The encoded training set: flat arrays and offsets, cached once per corpus and tokenizer, memory-mapped after."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from seq2seq.config import DataConfig
from seq2seq.data import encoded as encoded_module
from seq2seq.data.batches import make_batch, token_batches
from seq2seq.data.corpus import CorpusError, ParallelCorpus
from seq2seq.data.encoded import EncodedCorpus, cache_key, encode_training_set

from .tiny_models import CORPUS, corpus_lines, tiny_tokenizer, write_corpus


@pytest.fixture(scope="module")
def text() -> ParallelCorpus:
    return ParallelCorpus(*corpus_lines("train", 400))


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(vocab_size=150, joint=True, pairs=400)  # what build_tokenizer trains on `text`


def data_config(tmp_path, **values) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), **values)


def list_token_batches(src_lengths, tgt_lengths, batch_tokens, rng=None):
    """The list-based batching the arrays replaced, kept here as the reference they must equal."""
    order = list(range(len(src_lengths)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (src_lengths[i], tgt_lengths[i]))
    batches, current, longest = [], [], 0
    for i in order:
        length = max(src_lengths[i], tgt_lengths[i]) + 1
        if current and (len(current) + 1) * max(longest, length) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_array_batching_equals_the_list_batching(seed):
    rng = random.Random(seed)
    src = [rng.randint(1, 12) for _ in range(3000)]  # many ties, so the random tie-breaking matters
    tgt = [rng.randint(1, 12) for _ in range(3000)]
    for budget in (1, 40, 300):
        expected = list_token_batches(src, tgt, budget, random.Random(seed + 10))
        assert as_lists(token_batches(np.array(src), np.array(tgt), budget, random.Random(seed + 10))) == expected
    assert as_lists(token_batches(src, tgt, 100)) == list_token_batches(src, tgt, 100)


def as_lists(batches):
    return [b.tolist() for b in batches]


def test_batches_from_arrays_equal_batches_from_lists(text, tokenizer, tmp_path):
    src, tgt = tokenizer.encode_src(text.src), tokenizer.encode_tgt(text.tgt)
    corpus = encode_training_set(text, tokenizer, data_config(tmp_path, max_length=1000, max_length_ratio=1000.0))
    assert isinstance(corpus.src, np.memmap) and len(corpus) == len(src)
    for indices in ([0, 5, 17], [399, 3], list(range(64))):
        from_lists = make_batch([src[i] for i in indices], [tgt[i] for i in indices])
        from_arrays = make_batch(*corpus.pairs(indices))
        for name in ("src", "src_lengths", "tgt_in", "tgt_out"):
            a, b = getattr(from_lists, name), getattr(from_arrays, name)
            assert a.dtype == b.dtype == torch.long and torch.equal(a, b), name
    assert corpus.src_lengths.tolist() == [len(s) for s in src]


def test_the_cache_is_built_once_and_reused(text, tokenizer, tmp_path, monkeypatch, caplog):
    cfg = data_config(tmp_path)
    first = encode_training_set(text, tokenizer, cfg)
    calls = []
    real = encoded_module._encode_into
    monkeypatch.setattr(encoded_module, "_encode_into", lambda *a: calls.append(1) or real(*a))
    with caplog.at_level("INFO"):
        second = encode_training_set(text, tokenizer, cfg)
    assert calls == []  # no re-encoding
    assert "encoded pairs from the cache" in caplog.text and "pairs after length filtering" in caplog.text
    for name in ("src", "src_offsets", "tgt", "tgt_offsets"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    folder = tmp_path / "cache" / cache_key(text.key, tokenizer, cfg)
    assert json.loads((folder / "meta.json").read_text())["pairs"] == len(first)


def test_a_changed_corpus_tokenizer_or_filter_builds_a_new_cache(text, tokenizer, tmp_path):
    cfg = data_config(tmp_path)
    keys = {cache_key(text.key, tokenizer, cfg)}
    changed_text = ParallelCorpus([text.src[0] + " Hund", *text.src[1:]], text.tgt)
    keys.add(cache_key(changed_text.key, tokenizer, cfg))
    other = tiny_tokenizer(vocab_size=160, joint=True, pairs=400)
    keys.add(cache_key(text.key, other, cfg))
    keys.add(cache_key(text.key, tokenizer, data_config(tmp_path, max_length=20)))
    keys.add(cache_key(text.key, tokenizer, data_config(tmp_path, max_length_ratio=1.5)))
    assert len(keys) == 5
    assert cache_key(text.key, tokenizer, cfg) == cache_key(
        ParallelCorpus(list(text.src), list(text.tgt)).key, tokenizer, cfg
    )
    small = encode_training_set(text, tokenizer, data_config(tmp_path, max_length=12))
    assert len(small) < len(encode_training_set(text, tokenizer, cfg))


def test_a_build_that_dies_is_never_used(text, tokenizer, tmp_path, monkeypatch):
    cfg = data_config(tmp_path)
    folder = tmp_path / "cache" / cache_key(text.key, tokenizer, cfg)
    # what a process killed mid-build leaves: a temporary folder with some of the arrays
    leftover = tmp_path / "cache" / f".{folder.name}.killed.tmp"
    leftover.mkdir(parents=True)
    np.save(leftover / "src.npy", np.arange(3, dtype=np.int32))

    def dies(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoded_module, "_encode_into", dies)
    with pytest.raises(KeyboardInterrupt):
        encode_training_set(text, tokenizer, cfg)
    assert not folder.exists()  # nothing half-built under the real name
    monkeypatch.undo()
    corpus = encode_training_set(text, tokenizer, cfg)
    assert (folder / "meta.json").is_file() and len(corpus) > 300


def test_two_builders_of_one_cache_at_once(text, tokenizer, tmp_path, monkeypatch):
    cfg = data_config(tmp_path)
    both_encoded = threading.Barrier(2)
    real = encoded_module._encode_into

    def encode_then_wait(*args):  # both finish encoding before either renames: a real race for the name
        result = real(*args)
        both_encoded.wait(timeout=60)
        return result

    monkeypatch.setattr(encoded_module, "_encode_into", encode_then_wait)
    results: list[EncodedCorpus] = []
    threads = [threading.Thread(target=lambda: results.append(encode_training_set(text, tokenizer, cfg))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2 and all(np.array_equal(r.tgt, results[0].tgt) for r in results)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache_key(text.key, tokenizer, cfg)]  # no leftovers


BUILD = """
import sys
from seq2seq.config import DataConfig, TokenizerConfig
from seq2seq.data.corpus import ParallelCorpus
from seq2seq.data.encoded import encode_training_set
from seq2seq.data.tokenizer import build_tokenizer
src = open(sys.argv[1]).read().splitlines()[:2000]
tgt = open(sys.argv[2]).read().splitlines()[:2000]
tok = build_tokenizer(ParallelCorpus(src, tgt), TokenizerConfig(vocab_size=150, cache_dir=sys.argv[3]))
print(len(encode_training_set(ParallelCorpus(src, tgt), tok, DataConfig(cache_dir=sys.argv[4]))))
"""


def test_two_processes_building_one_cache_both_get_it(tmp_path):
    spm = tmp_path / "spm"
    args = [sys.executable, "-c", BUILD, CORPUS / "train.de", CORPUS / "train.en", spm, tmp_path / "cache"]
    subprocess.run([*args[:5], spm, tmp_path / "warm"], check=True, capture_output=True)  # the tokenizer, once
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert outputs[0][0] == outputs[1][0] and int(outputs[0][0]) > 1900
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and (folders[0] / "meta.json").is_file()


def test_nothing_left_after_filtering_is_a_data_error(text, tokenizer, tmp_path):
    with pytest.raises(CorpusError, match="no training pairs left after length filtering"):
        encode_training_set(text, tokenizer, data_config(tmp_path, max_length=1))


def test_without_a_cache_folder_the_arrays_are_built_in_memory(text, tokenizer, tmp_path):
    corpus = encode_training_set(text, tokenizer, DataConfig(cache_dir=None))
    assert not isinstance(corpus.src, np.memmap) and len(corpus) > 300
    cached = encode_training_set(text, tokenizer, data_config(tmp_path))
    assert np.array_equal(corpus.src_offsets, cached.src_offsets) and np.array_equal(corpus.tgt, cached.tgt)


def test_with_both_caches_in_place_the_training_text_is_not_read(tmp_path, monkeypatch):
    from seq2seq.config import Config
    from seq2seq.data import corpus as corpus_module
    from seq2seq.data.prepare import prepare_data

    folder = write_corpus(tmp_path / "corpus")
    config = Config.from_dict(
        {
            "data": {"dir": str(folder), "cache_dir": str(tmp_path / "data-cache")},
            "tokenizer": {"vocab_size": 120, "cache_dir": str(tmp_path / "spm")},
        }
    )
    first = prepare_data(config)
    reads: list[str] = []
    real = corpus_module.SplitReader.__init__

    def recording_init(self, cfg, split, *args):
        reads.append(split)
        real(self, cfg, split, *args)

    monkeypatch.setattr(corpus_module.SplitReader, "__init__", recording_init)
    second = prepare_data(config)
    assert reads == ["valid", "test"]  # the training split was never read
    assert second.tokenizer.to_dict() == first.tokenizer.to_dict() and len(second.valid) == 20
    assert np.array_equal(second.train.tgt, first.train.tgt) and isinstance(second.train.src, np.memmap)
    # one changed byte in a training file: read again, new caches
    (folder / "train.en").write_text((folder / "train.en").read_text().replace("dog", "cat", 1))
    reads.clear()
    third = prepare_data(config)
    assert "train" in reads and not np.array_equal(third.train.tgt, first.train.tgt)


def test_the_fingerprint_follows_the_files_and_the_reading_settings(tmp_path):
    from seq2seq.data.corpus import fingerprint

    folder = write_corpus(tmp_path / "corpus")
    base = DataConfig(dir=str(folder))
    prints = {fingerprint(base), fingerprint(DataConfig(dir=str(folder), max_train_pairs=100))}
    prints.add(fingerprint(DataConfig(dir=str(folder), src_lang="en", tgt_lang="de")))
    assert len(prints) == 3 and fingerprint(base) == fingerprint(DataConfig(dir=str(folder)))
    assert fingerprint(DataConfig(dir=None, hub_name="bentrevett/multi30k")) is None  # hub: the text decides
