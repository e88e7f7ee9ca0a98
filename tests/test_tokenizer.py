from seq2seq.config import TokenizerConfig
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, build_tokenizer

DE = ["Der Hund sieht die Katze.", "Die Frau liest ein Buch.", "Ein Mann läuft schnell nach Hause."] * 30
EN = ["The dog sees the cat.", "The woman reads a book.", "A man runs home quickly."] * 30


def test_joint_model_round_trips_and_uses_the_fixed_special_ids(tmp_path):
    tok = build_tokenizer(DE, EN, TokenizerConfig(vocab_size=60, cache_dir=str(tmp_path)))
    assert tok.joint and tok.src is tok.tgt
    for piece_id, piece in ((PAD_ID, "<pad>"), (UNK_ID, "<unk>"), (BOS_ID, "<s>"), (EOS_ID, "</s>")):
        assert tok.tgt.id_to_piece(piece_id) == piece
    ids = tok.encode_tgt(EN[:3])
    assert tok.decode_tgt(ids) == EN[:3]  # detokenized back to the original text
    assert tok.decode_tgt([[BOS_ID, *ids[0], EOS_ID, PAD_ID]]) == EN[:1]  # special ids dropped


def test_models_are_cached_by_content_and_settings(tmp_path, monkeypatch):
    cfg = TokenizerConfig(vocab_size=60, cache_dir=str(tmp_path), joint=False, type="bpe")
    first = build_tokenizer(DE, EN, cfg)
    assert len(list(tmp_path.glob("*.model"))) == 2

    import seq2seq.tokenizer as module

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(module, "train_sentencepiece", no_training)
    again = build_tokenizer(DE, EN, cfg)
    assert again.to_dict() == first.to_dict()
    monkeypatch.undo()
    build_tokenizer(DE, EN[:-1] + ["Something else."], cfg)  # other text: a new model
    assert len(list(tmp_path.glob("*.model"))) == 4


def test_separate_models_serialize_to_bytes(tmp_path):
    tok = build_tokenizer(DE, EN, TokenizerConfig(vocab_size=50, cache_dir=str(tmp_path), joint=False))
    state = tok.to_dict()
    assert isinstance(state["src"], bytes) and isinstance(state["tgt"], bytes)
    clone = Tokenizer.from_dict(state)
    assert clone.encode_src(DE[:2]) == tok.encode_src(DE[:2])
    assert clone.encode_tgt(EN[:2]) == tok.encode_tgt(EN[:2])
