import numpy as np
import pytest

from seq2seq.config import TokenizerConfig
from seq2seq.data.corpus import ParallelCorpus
from seq2seq.data.tokenizer import Tokenizer, WordCache, build_tokenizer, write_sample
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID

from .tiny_models import corpus_lines, tiny_tokenizer

DE = ["Der Hund sieht die Katze.", "Die Frau liest ein Buch.", "Ein Mann läuft schnell nach Hause."] * 30
EN = ["The dog sees the cat.", "The woman reads a book.", "A man runs home quickly."] * 30


def test_joint_model_round_trips_and_uses_the_fixed_special_ids(tmp_path):
    tok = build_tokenizer(ParallelCorpus(DE, EN), TokenizerConfig(vocab_size=60, cache_dir=str(tmp_path)))
    assert tok.joint and tok.src is tok.tgt
    for piece_id, piece in ((PAD_ID, "<pad>"), (UNK_ID, "<unk>"), (BOS_ID, "<s>"), (EOS_ID, "</s>")):
        assert tok.tgt.id_to_piece(piece_id) == piece
    ids = tok.encode_tgt(EN[:3])
    assert tok.decode_tgt(ids) == EN[:3]  # detokenized back to the original text
    assert tok.decode_tgt([[BOS_ID, *ids[0], EOS_ID, PAD_ID]]) == EN[:1]  # special ids dropped


def test_models_are_cached_by_content_and_settings(tmp_path, monkeypatch):
    cfg = TokenizerConfig(vocab_size=60, cache_dir=str(tmp_path), joint=False, type="bpe")
    first = build_tokenizer(ParallelCorpus(DE, EN), cfg)
    assert len(list(tmp_path.glob("*.model"))) == 2

    import seq2seq.data.tokenizer as module

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(module, "train_sentencepiece", no_training)
    again = build_tokenizer(ParallelCorpus(DE, EN), cfg)
    assert again.to_dict() == first.to_dict()
    monkeypatch.undo()
    build_tokenizer(ParallelCorpus(DE, EN[:-1] + ["Something else."]), cfg)  # other text: a new model
    assert len(list(tmp_path.glob("*.model"))) == 4


def test_separate_models_serialize_to_bytes(tmp_path):
    tok = build_tokenizer(ParallelCorpus(DE, EN), TokenizerConfig(vocab_size=50, cache_dir=str(tmp_path), joint=False))
    state = tok.to_dict()
    assert isinstance(state["src"], bytes) and isinstance(state["tgt"], bytes)
    clone = Tokenizer.from_dict(state)
    assert clone.encode_src(DE[:2]) == tok.encode_src(DE[:2])
    assert clone.encode_tgt(EN[:2]) == tok.encode_tgt(EN[:2])


# ------------------------------------------------------------------------------ the word cache


def embedded_corpus(lines: int = 4000) -> ParallelCorpus:
    return ParallelCorpus(*corpus_lines("train", lines))


TRICKY = [
    "zwei  Leerzeichen und\tein Tab",  # runs of spaces collapse; a tab is a space after normalization
    "ein\u00a0geschütztes Leerzeichen, ein ｆｕｌｌｗｉｄｔｈ Wort, ein ¨ Trema",  # NFKC changes these words
    "schon ▁ ein Metasymbol▁darin",
    "unbekannt: \u4e00\u4e01 und \U0001f600 Emoji",  # characters the model has never seen: <unk>
    " führendes und folgendes Leerzeichen ",
    "e\u0301 kombiniert",  # a combining accent after its letter
    "",
]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_the_word_cache_encodes_exactly_like_sentencepiece(model_type):
    text = embedded_corpus()
    tok = tiny_tokenizer(vocab_size=300, joint=True, pairs=len(text), type=model_type)
    cache = WordCache(tok.src)
    lines = text.src + TRICKY + text.tgt + TRICKY
    parts = [cache.encode(lines[start : start + 700]) for start in range(0, len(lines), 700)]  # the cache grows
    flat, lengths = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    reference = tok.encode_src(lines)
    assert lengths.tolist() == [len(ids) for ids in reference]
    assert flat.tolist() == [i for ids in reference for i in ids]
    assert flat.dtype == np.int32
    assert cache.enabled and 100 < len(cache.index) < len(lines)  # words, not lines, were segmented


def test_the_word_cache_trusts_only_words_normalization_leaves_alone():
    tok = tiny_tokenizer(vocab_size=120, joint=True, pairs=500)
    cache = WordCache(tok.src)
    cache.encode(["Der Hund", "ein\u00a0Hund", "Tab\tHund", "Meta▁Hund"])
    trusted = {word: cache._safe[row] for word, row in cache.index.items()}
    assert trusted["Der"] and trusted["Hund"]
    assert not trusted["ein\u00a0Hund"] and not trusted["Tab\tHund"] and not trusted["Meta▁Hund"]


# ----------------------------------------------------------------------- sampling for SentencePiece


def test_sentencepiece_trains_on_a_seeded_sample_of_a_large_corpus(tmp_path, caplog):
    text = embedded_corpus(3000)
    cfg = TokenizerConfig(vocab_size=200, sample_sentences=1000, joint=False, cache_dir=str(tmp_path / "a"))
    sample = write_sample(text, 1000, tmp_path)
    src_lines = list(sample.lines(0))
    assert sample.sampled and sample.pairs == 1000 and len(src_lines) == 1000
    pairs = list(zip(src_lines, sample.lines(1)))
    assert set(pairs) <= set(zip(text.src, text.tgt)) and src_lines != text.src[:1000]  # aligned, random
    with caplog.at_level("INFO", logger="seq2seq.data.tokenizer"):
        first = build_tokenizer(text, cfg)
    assert "on a random sample of 1000 of 3000 pairs" in caplog.text
    again = build_tokenizer(text, TokenizerConfig(**{**vars(cfg), "cache_dir": str(tmp_path / "b")}))
    assert again.to_dict() == first.to_dict()  # the sample is seeded: the same model in a fresh cache
    everything = build_tokenizer(text, TokenizerConfig(**{**vars(cfg), "sample_sentences": 10_000}))
    assert everything.to_dict() != first.to_dict()


def test_a_joint_model_samples_half_as_many_pairs(tmp_path):
    text = embedded_corpus(3000)
    assert write_sample(text, 3000, tmp_path).sampled is False  # all pairs: the small-corpus behaviour
    sample = write_sample(text, 2000 // 2, tmp_path)
    assert sample.pairs == 1000 and len(list(sample.lines(0))) + len(list(sample.lines(1))) == 2000
