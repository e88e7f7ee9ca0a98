"""Several training corpora in one run (data.corpora): tags as single pieces, weights per epoch, per-corpus
counts; multilingual models (data.target_tags) with per-pair validation and test scores and --target-lang."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config, ConfigError, TokenizerConfig
from seq2seq.data.combined import sampled_rows, training_corpora, training_tags
from seq2seq.data.prepare import check_tags, prepare_data
from seq2seq.data.sampled import EpochPairs
from seq2seq.data.tokenizer import Tokenizer, flatten, prepend, train_sentencepiece
from seq2seq.training.run import train

from .conftest import REPO
from .test_cli_errors import run_translate
from .tiny_models import corpus_lines


def write_pairs(folder: Path, split: str, pairs: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, lines in pairs.items():
        (folder / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def de_en(folder: Path, first: int = 0, count: int = 200, held_out: int = 8) -> Path:
    """Training pairs first .. first + count of the embedded corpus, and `held_out` validation and test pairs."""
    src, tgt = corpus_lines("train", first + count)
    write_pairs(folder, "train", {"de": src[first:], "en": tgt[first:]})
    for split in ("val", "test") if held_out else ():
        src, tgt = corpus_lines(split, held_out)
        write_pairs(folder, split, {"de": src, "en": tgt})
    return folder


def config(data: dict[str, Any], cache: Path, **train: Any) -> Config:
    return Config.from_dict(
        {
            "data": {"source": "local", "cache_dir": str(cache / "data"), "preprocess_workers": 0, **data},
            "tokenizer": {"vocab_size": 150, "cache_dir": str(cache / "spm")},
            "model": {"embedding_size": 16, "hidden_size": 16},
            "train": {
                "max_steps": 3,
                "batch_tokens": 400,
                "validate_every": 3,
                "device": "cpu",
                "insight": False,
                "test_beam_size": 2,
                **train,
            },
        }
    )


# ------------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"corpora": [{"dir": "x", "weight": 0}]}, "data.corpora[0].weight must be a number > 0"),
        ({"weight": -1.5}, "data.weight must be a number > 0"),
        ({"corpora": [{"dir": "x", "tag": "<B T>"}]}, "data.corpora[0].tag='<B T>' is not a single token"),
        ({"tag": "BT"}, "data.tag='BT' is not a single token"),
        ({"corpora": [{"dir": "x", "prefx": "bt"}]}, "unknown key(s) ['prefx'] in data.corpora[0]"),
        ({"corpora": [{"dir": "x", "tgt_lang": "de"}]}, "data.corpora[0]: the source and target languages must differ"),
        ({"corpora": "x"}, "data.corpora must be a list of corpora"),
    ],
)
def test_bad_corpus_settings_are_refused_naming_the_key(data, message):
    with pytest.raises(ConfigError) as error:
        Config.from_dict({"data": data})
    assert message in str(error.value)


@pytest.mark.slow
def test_bad_corpus_settings_on_the_command_line_exit_2_in_one_line(tmp_path):
    for override, message in (
        ("data.corpora=[{dir: x, weight: 0}]", "data.corpora[0].weight must be a number > 0"),
        ('data.corpora=[{dir: x, tag: "B T"}]', "is not a single token"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "seq2seq.train", override, f"hydra.run.dir={tmp_path}"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def test_a_corpus_entry_takes_the_main_corpus_values_it_leaves_null(tmp_path):
    cfg = Config.from_dict(
        {
            "data": {
                "dir": "main",
                "format": "tsv",
                "target_tags": True,
                "corpora": [{"prefix": "train_bt", "tag": "<BT>", "weight": 2}, {"dir": "other", "tgt_lang": "fr"}],
            }
        }
    ).data
    main, bt, other = training_corpora(cfg)
    assert (bt.data.dir, bt.data.format, bt.data.train_prefix, bt.data.src_lang) == ("main", "tsv", "train_bt", "de")
    assert bt.tags == ("<2en>", "<BT>") and bt.weight == 2 and main.tags == ("<2en>",)
    assert (other.data.dir, other.data.train_prefix, other.pair, other.name) == (
        "other",
        "train",
        "de-fr",
        "other/train",
    )
    assert training_tags(cfg) == ["<2en>", "<BT>", "<2fr>"]
    twice = Config.from_dict({"data": {"corpora": [{"prefix": "a"}, {"prefix": "a"}]}}).data
    with pytest.raises(ConfigError, match="named 'synth_de_en/a' like another"):
        training_corpora(twice)


# ------------------------------------------------------------------------------------------- tags


def tagged_tokenizer(tags: list[str]) -> Tokenizer:
    src, tgt = corpus_lines("train", 300)
    return Tokenizer(train_sentencepiece(src + tgt, TokenizerConfig(vocab_size=150), tags))


def test_tags_are_single_pieces_and_a_line_starting_with_tags_encodes_as_training_does():
    tok = tagged_tokenizer(["<BT>", "<2fr>"])
    assert tok.tags == {"<BT>": 4, "<2fr>": 5} and tok.target_languages == ["fr"]
    plain = tok.encode_src(["ein Mann"])[0]
    assert tok.encode_src(["<2fr> <BT> ein Mann", "<BT>  ein Mann", "<XX> ein Mann"])[:2] == [
        [5, 4, *plain],
        [4, *plain],
    ]
    assert tok.encode_src(["<XX> ein Mann"])[0][:1] != [4]  # not a tag of the model: ordinary text
    assert tok.src_pieces("<BT> ein Mann")[:2] == ["<BT>", tok.src_pieces("ein Mann")[0]]
    assert Tokenizer(tagged_tokenizer([]).to_dict()["src"]).tags == {}


def test_prepend_puts_the_ids_before_every_row():
    rows = [[7, 8], [], [9]]
    flat, lengths = prepend(*flatten(rows), [4, 5])
    assert flatten([[4, 5, *row] for row in rows])[0].tolist() == flat.tolist()
    assert lengths.tolist() == [4, 2, 3]


def test_with_target_language_names_the_languages_there_are():
    tok = tagged_tokenizer(["<2de>", "<2fr>"])
    assert tok.with_target_language(["a b", ""], "fr") == ["<2fr> a b", ""]
    with pytest.raises(ValueError, match="unknown target language 'cs': this model translates into de, fr"):
        tok.with_target_language(["a"], "cs")
    with pytest.raises(ValueError, match="one output language"):
        tagged_tokenizer([]).with_target_language(["a"], "fr")


def test_the_server_asks_for_a_target_language_or_names_the_field():
    from seq2seq.serving import app as api

    tok, limits = tagged_tokenizer(["<2de>", "<2fr>"]), api.Limits()
    settings = api.DecodeSettings(1, 1, 0.6, False)
    body = json.dumps({"text": ["a b", ""], "target_lang": "fr"}).encode()
    lines, _ = api.parse_request(body, limits, settings, lambda beam: None, tok)
    assert [line.text for line in lines] == ["<2fr> a b", ""]
    for lang, message in (("cs", "unknown target language 'cs'"), (3, "target_lang must be a string")):
        body = json.dumps({"text": ["a"], "target_lang": lang}).encode()
        with pytest.raises(api.RequestError) as error:
            api.parse_request(body, limits, settings, lambda beam: None, tok)
        assert error.value.status == 422 and message in str(error.value.message)


def test_a_given_tokenizer_without_the_corpora_tags_is_refused():
    check_tags(tagged_tokenizer(["<BT>"]), ["<BT>"])
    with pytest.raises(ConfigError, match="source tag\\(s\\) <2fr> .*\\(its tags: <BT>\\)"):
        check_tags(tagged_tokenizer(["<BT>"]), ["<BT>", "<2fr>"])


# ------------------------------------------------------------------------------------------- weights


def test_weights_repeat_or_subsample_each_corpus_per_epoch():
    rows = sampled_rows([10, 4], [0.5, 2.0], seed=1, epoch=1)
    assert rows is not None and len(rows) == 5 + 8
    first, second = rows[rows < 10], rows[rows >= 10]
    assert len(set(first.tolist())) == 5 and sorted(second.tolist()) == [10, 10, 11, 11, 12, 12, 13, 13]
    assert np.array_equal(rows, sampled_rows([10, 4], [0.5, 2.0], seed=1, epoch=1))  # resumable
    other_halves = [set(sampled_rows([1000, 4], [0.5, 1.0], 1, e)[:500].tolist()) for e in (1, 2)]  # type: ignore[index]
    assert other_halves[0] != other_halves[1]
    assert sampled_rows([10, 4], [1, 1], 1, 1) is None


# ------------------------------------------------------------------------------------------- prepared data


def test_two_corpora_share_one_tokenizer_and_cache_with_the_tag_on_one(tmp_path, caplog):
    main, bt = de_en(tmp_path / "main", 0, 200), de_en(tmp_path / "bt", 200, 100, held_out=0)
    cfg = config({"dir": str(main), "corpora": [{"dir": str(bt), "tag": "<BT>", "weight": 1.5}]}, tmp_path)
    with caplog.at_level(logging.INFO):
        data = prepare_data(cfg)
    assert data.train.parts == (200, 100) and data.tokenizer.tags == {"<BT>": 4}
    src, _ = data.train.pairs([0, 199, 200, 299])
    assert [int(ids[0]) == 4 for ids in src] == [False, False, True, True]
    assert "corpus bt/train (de-en): 100 pairs, weight 1.5: 150 per epoch, tags <BT>" in caplog.text
    assert len(EpochPairs(data, cfg).lengths(1)[0]) == 200 + 150
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = prepare_data(cfg)  # both caches hit: the training text is not read
    assert "the training text was not read" in caplog.text and again.train.parts == (200, 100)
    assert np.array_equal(again.train.src, data.train.src)


def test_a_sampled_segmentation_keeps_the_tags_whole(tmp_path):
    main, bt = de_en(tmp_path / "main", 0, 120), de_en(tmp_path / "bt", 120, 60, held_out=0)
    cfg = config({"dir": str(main), "corpora": [{"dir": str(bt), "tag": "<BT>"}]}, tmp_path)
    cfg.tokenizer.sampling_alpha = 0.3
    data = prepare_data(cfg)
    sampled = EpochPairs(data, cfg).pairs(1)
    src, _ = sampled.pairs(range(len(data.train)))
    assert [int(ids[0]) == 4 for ids in src] == [False] * 120 + [True] * 60
    assert not any(4 in ids[1:] for ids in src)


@pytest.mark.slow  # a whole (tiny) training run with two language pairs
def test_a_multilingual_run_reports_each_language_pair(tmp_path, monkeypatch, capsys):
    """en->{de, fr}: one model with target tags; validation and test per pair, results.json per corpus."""
    src, tgt = corpus_lines("train", 200)
    fake_fr = [line.upper() for line in src]  # another "language": enough to tell the pairs apart
    folder = write_pairs(tmp_path / "m", "train", {"en": tgt, "de": src, "fr": fake_fr})
    for split in ("val", "test"):
        s, t = corpus_lines(split, 6)
        write_pairs(folder, split, {"en": t, "de": s, "fr": [line.upper() for line in s]})
    cfg = config(
        {"dir": str(folder), "src_lang": "en", "tgt_lang": "de", "target_tags": True, "corpora": [{"tgt_lang": "fr"}]},
        tmp_path,
    )
    results = train(cfg, tmp_path / "run")
    assert results is not None
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [(c["name"], c["pair"], c["tags"], c["pairs"]) for c in saved["train"]["corpora"]] == [
        ("synth_de_en", "en-de", ["<2de>"], 200),
        ("m/train", "en-fr", ["<2fr>"], 200),
    ]
    assert set(saved["test"]["beam"]["pairs"]) == {"en-de", "en-fr"}
    assert saved["test"]["beam"]["ter"] >= 0 and "ter" in saved["valid"]["history"][-1]  # TER beside BLEU
    assert {"bleu/en-de", "bleu/en-fr", "chrf/en-fr"} <= set(saved["valid"]["history"][-1])
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert Tokenizer.from_dict(checkpoint["tokenizer"]).target_languages == ["de", "fr"]

    args = [tmp_path / "run", "--max-len-b", "3", "--target-lang"]
    status, out, err, _ = run_translate([*args, "fr"], "A man .\n\n", monkeypatch, capsys)
    assert status == 0, err
    assert len(out.splitlines()) == 2 and out.splitlines()[1] == ""
    status, out, err, _ = run_translate([*args, "cs"], "A man .\n", monkeypatch, capsys)
    assert status == 2 and out == ""
    assert "unknown target language 'cs': this model translates into de, fr" in err


@pytest.mark.parametrize("sampling", [0.0, 0.3])
def test_a_hub_dataset_is_loaded_once_for_every_split(tmp_path, monkeypatch, sampling):
    """A local folder as a dataset name goes through load_dataset as the hub does (tests/test_corpus.py)."""
    import datasets.config

    from seq2seq.data import corpus

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    repo = tmp_path / "hubset"
    repo.mkdir()
    src, tgt = corpus_lines("train", 60)
    for split in ("train", "validation", "test"):
        rows = [{"de": s, "en": t} for s, t in zip(src, tgt)]
        (repo / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loads = []
    real = corpus.load_hub_dataset
    monkeypatch.setattr(corpus, "load_hub_dataset", lambda cfg: loads.append(cfg.hub_name) or real(cfg))
    cfg = config({"source": "hub", "dir": None, "hub_name": str(repo)}, tmp_path)
    cfg.tokenizer.sampling_alpha = sampling
    first = prepare_data(cfg)
    assert len(loads) == 1 and len(first.valid) == 60
    prepare_data(cfg)  # the caches hit: the evaluation sets (and, with subword sampling, the training text) only
    assert len(loads) == 2
