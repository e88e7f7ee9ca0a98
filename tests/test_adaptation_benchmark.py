"""benchmarks/adaptation.py: the halves, the back-translation study's runs and its report, at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import load_script
from .tiny_models import corpus_lines

pytestmark = pytest.mark.bench

TINY = [
    "model.embedding_size=16",
    "model.hidden_size=16",
    "tokenizer.vocab_size=200",
    "train.batch_tokens=300",
    "train.device=cpu",
    "train.insight=false",
]


def fake_multi30k(folder: Path, pairs: int = 200) -> Path:
    """train / val / test_2016_flickr in de, en and a made-up fr (German in capitals)."""
    folder.mkdir(parents=True)
    for split, stem, count in (("train", "train", pairs), ("val", "val", 10), ("test", "test_2016_flickr", 10)):
        de, en = corpus_lines(split, count)
        for lang, lines in (("de", de), ("en", en), ("fr", [line.upper() for line in de])):
            (folder / f"{stem}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def test_the_halves_split_the_training_pairs_and_keep_the_held_out_sets(tmp_path):
    script = load_script("adaptation")
    a, b = script.halves(fake_multi30k(tmp_path / "m30k", 11), tmp_path / "work")
    assert len(script.read(a / "train.de")) == 5 and len(script.read(b / "train.en")) == 6
    assert script.read(tmp_path / "work" / "mono" / "B.en") == script.read(b / "train.en")
    assert script.read(a / "test_2016_flickr.en") == script.read(tmp_path / "m30k" / "test_2016_flickr.en")


@pytest.mark.slow
def test_the_back_translation_study_trains_every_variant_and_reports_them(tmp_path, capsys):
    data, out = fake_multi30k(tmp_path / "m30k"), tmp_path / "bt.json"
    argv = ["back-translation", "--data-dir", str(data), "--work-dir", str(tmp_path / "work"), "--steps", "2"]
    assert load_script("adaptation").main([*argv, "--experiment", "gru", "--out", str(out), *TINY]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["run"] for r in rows] == ["reverse_A", "A", "A+BT_beam", "A+BT_sampling", "A+BT_sampling_tagged", "A+B"]
    assert all(r["steps"] == 2 for r in rows)
    work = tmp_path / "work"
    assert len((work / "bt_sampling" / "train.de").read_text().splitlines()) == 100  # B's English, translated
    tagged = json.loads((work / "runs" / "A+BT_sampling_tagged" / "results.json").read_text())["train"]["corpora"]
    assert tagged[1]["tags"] == ["<BT>"] and tagged[0]["pairs"] == 100
    assert "| A+B | A + the real B (upper bound) | 2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_more_samples_upsampled_real_pairs_and_a_longer_reverse_model(tmp_path):
    data, out, work = fake_multi30k(tmp_path / "m30k", 40), tmp_path / "bt.json", tmp_path / "work"
    argv = ["back-translation", "--data-dir", str(data), "--work-dir", str(work), "--steps", "1"]
    options = ["--samples", "2", "--real-weight", "2", "--sampling", "--top-k 5", "--reverse-steps", "2"]
    assert load_script("adaptation").main([*argv, *options, "--experiment", "gru", "--out", str(out), *TINY]) == 0
    rows = {r["run"]: r for r in json.loads(out.read_text())["rows"]}
    assert {"A+BT_sampling_x2", "A_x2+BT_sampling", "A_x2+BT_sampling_x2"} <= set(rows)
    assert rows["reverse_A"]["steps"] == 2 and {r["steps"] for n, r in rows.items() if n != "reverse_A"} == {1}
    names = rows["A+BT_sampling_x2"]["corpora"]
    assert len(names) == 3 and names[0].endswith(": 20")  # the real A; a sampled pair may fail the length filter
    assert names[1].startswith("bt_sampling/") and names[2].startswith("bt_sampling_seed2/")
    first, second = ((work / f / "train.de").read_text() for f in ("bt_sampling", "bt_sampling_seed2"))
    assert first != second  # two seeds, two samples of B's English
    upsampled = json.loads((work / "runs" / "A_x2+BT_sampling_x2" / "results.json").read_text())["train"]
    assert upsampled["corpora"][0]["weight"] == 2 and len(upsampled["corpora"]) == 3
