"""seq2seq.data.corpus with its two sources: local text / TSV / JSONL corpora (local_files), the hub's offline
failure (hub), helpers.

Every test builds tiny files under tmp_path; none needs the network.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from seq2seq.config import DataConfig
from seq2seq.data import corpus, hub
from seq2seq.data.corpus import (
    CorpusError,
    ParallelCorpus,
    clean_pairs,
    length_filter,
    load_corpus,
    load_split,
    resolve_data_dir,
)


def write(path: Path, content: str | bytes) -> Path:
    """Write text (UTF-8) or raw bytes; a `.gz` name is gzip-compressed."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def local_cfg(folder: Path, **overrides: object) -> DataConfig:
    values: dict[str, object] = {"name": "test", "source": "local", "format": "text", "dir": str(folder)}
    values.update(overrides)
    return DataConfig(**values)  # type: ignore[arg-type]


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# ------------------------------------------------------------------------------------------------ text


def test_text_plain(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "Ein Hund läuft.\nZwei Katzen.\n")
    write(tmp_path / "train.en", "A dog runs.\nTwo cats.\n")
    split = load_split(local_cfg(tmp_path), "train")
    assert split.src == ["Ein Hund läuft.", "Zwei Katzen."]
    assert split.tgt == ["A dog runs.", "Two cats."]
    assert len(split) == 2


def test_text_gz_and_last_line_without_newline(tmp_path: Path) -> None:
    write(tmp_path / "val.de.gz", "eins\nzwei")
    write(tmp_path / "val.en.gz", "one\ntwo")
    split = load_split(local_cfg(tmp_path), "valid")
    assert (split.src, split.tgt) == (["eins", "zwei"], ["one", "two"])


def test_text_blank_line_keeps_alignment_and_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "train.de", "a\n\n  c  \r\nd\n")  # line 2 empty, line 3 padded with a CRLF ending
    write(tmp_path / "train.en", "A\nB\nC\n   \n")  # line 4 only spaces
    caplog.set_level(logging.INFO, logger="seq2seq.data.corpus")
    split = load_split(local_cfg(tmp_path), "train")
    assert list(zip(split.src, split.tgt)) == [("a", "A"), ("c", "C")]
    assert "kept 2 of 4 pairs (2 with an empty side)" in caplog.text


def test_text_byte_order_mark_is_removed(tmp_path: Path) -> None:
    write(tmp_path / "train.de.gz", "\ufeffHallo\n")
    write(tmp_path / "train.en", "\ufeffHello\n")
    split = load_split(local_cfg(tmp_path), "train")
    assert (split.src, split.tgt) == (["Hallo"], ["Hello"])


def test_text_line_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    src = write(tmp_path / "train.de", "a\nb\nc\n")
    tgt = write(tmp_path / "train.en.gz", "A\nB\n")
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path), "train")
    message = str(err.value)
    assert str(src) in message and str(tgt) in message
    assert "3 lines" in message and "has 2" in message


def test_text_bare_carriage_return_is_explained(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "a\rb\n")
    write(tmp_path / "train.en", "A\n")
    with pytest.raises(CorpusError, match="carriage return"):
        load_split(local_cfg(tmp_path), "train")


def test_text_missing_file_names_paths_tried(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "a\n")
    write(tmp_path / "train.fr", "A\n")
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path), "train")
    message = str(err.value)
    assert str(tmp_path / "train.en") in message and str(tmp_path / "train.en.gz") in message
    assert "train.fr" in message  # what is there instead


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "train.de", b"gut\nauch gut\nschlecht \xff\xfe hier\n")
    write(tmp_path / "train.en", "good\nalso good\nbad here\n")
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path), "train")
    assert str(tmp_path / "train.de") in str(err.value)
    assert "line 3" in str(err.value)


def test_invalid_utf8_in_gz_file(tmp_path: Path) -> None:
    write(tmp_path / "train.de.gz", b"ok\n\xc3\n")
    write(tmp_path / "train.en", "ok\nok\n")
    with pytest.raises(CorpusError, match=r"train\.de\.gz, line 2"):
        load_split(local_cfg(tmp_path), "train")


def test_load_corpus_and_max_train_pairs(tmp_path: Path) -> None:
    for prefix, n in (("train", 5), ("val", 3), ("test", 2)):
        write(tmp_path / f"{prefix}.de", "".join(f"de {i}\n" for i in range(n)))
        write(tmp_path / f"{prefix}.en", "".join(f"en {i}\n" for i in range(n)))
    cfg = local_cfg(tmp_path, source="auto", max_train_pairs=2)
    splits = load_corpus(cfg)
    assert {name: len(split) for name, split in splits.items()} == {"train": 2, "valid": 3, "test": 2}
    assert splits["train"].src == ["de 0", "de 1"]


# ------------------------------------------------------------------------------------------------- tsv


def test_tsv(tmp_path: Path) -> None:
    rows = 'Er sagte "ja.\tHe said "yes.\nNA\tnull\n\nHallo\tHello\tCC-BY attribution\n'
    write(tmp_path / "train.tsv.gz", rows)
    split = load_split(local_cfg(tmp_path, format="tsv"), "train")
    assert split.src == ['Er sagte "ja.', "NA", "Hallo"]  # quotes literal, NA a string, blank line dropped
    assert split.tgt == ['He said "yes.', "null", "Hello"]  # third column ignored


def test_tsv_line_without_tab_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "a\tA\nb\tB\nno tab here\n")
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path, format="tsv"), "train")
    assert f"{path}, line 3" in str(err.value)


# ----------------------------------------------------------------------------------------------- jsonl


def test_jsonl_translation_objects(tmp_path: Path) -> None:
    records = [{"translation": {"de": "Hallo", "en": "Hello"}}, {"translation": {"de": "Welt", "en": "World"}}]
    write(tmp_path / "train.jsonl.gz", jsonl(records))
    split = load_split(local_cfg(tmp_path, format="jsonl"), "train")
    assert (split.src, split.tgt) == (["Hallo", "Welt"], ["Hello", "World"])


def test_jsonl_flat_columns(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", jsonl([{"en": "Hello", "de": "Hallo", "id": 1}, {"en": "NA", "de": "null"}]))
    split = load_split(local_cfg(tmp_path, format="jsonl"), "train")
    assert (split.src, split.tgt) == (["Hallo", "null"], ["Hello", "NA"])


def test_jsonl_missing_language_names_keys_found(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", jsonl([{"translation": {"fr": "Bonjour", "en": "Hello"}}]))
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path, format="jsonl"), "train")
    message = str(err.value)
    assert str(tmp_path / "train.jsonl") in message and "'de'" in message and "['en', 'fr']" in message


def test_jsonl_record_missing_a_key_names_its_line(tmp_path: Path) -> None:
    records = [{"de": "a", "en": "A"}, {"de": "b", "en": "B"}, {"de": "c"}]
    write(tmp_path / "train.jsonl", jsonl(records[:2]) + "\n" + jsonl(records[2:]))  # a blank line before it
    with pytest.raises(CorpusError) as err:
        load_split(local_cfg(tmp_path, format="jsonl"), "train")
    assert "line 4" in str(err.value) and "'en'" in str(err.value) and "['de']" in str(err.value)


def test_jsonl_without_either_layout(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", jsonl([{"source": "a", "target": "A"}]))
    with pytest.raises(CorpusError, match=r"keys found: \['source', 'target'\]"):
        load_split(local_cfg(tmp_path, format="jsonl"), "train")


def test_jsonl_invalid_json_names_line(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", jsonl([{"de": "a", "en": "A"}]) + '{"de": "b", "en": \n')
    with pytest.raises(CorpusError, match=r"train\.jsonl, line 2: invalid JSON"):
        load_split(local_cfg(tmp_path, format="jsonl"), "train")


# ------------------------------------------------------------------------------------------------- hub


def hub_cfg(name: str) -> DataConfig:
    return DataConfig(name="hubtest", source="hub", dir=None, hub_name=name, test_prefix="test_2016_flickr")


def test_hub_unreachable_fails_fast_with_local_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: False)
    before = datasets.config.HF_HUB_OFFLINE
    started = time.perf_counter()
    with pytest.raises(CorpusError) as err:
        load_corpus(hub_cfg("seq2seq-tests/no-such-corpus"))
    assert time.perf_counter() - started < 10
    assert "data.dir" in str(err.value) and "no-such-corpus" in str(err.value)
    after = datasets.config.HF_HUB_OFFLINE
    assert after == before  # offline mode was only switched on for the load


def test_hub_with_hf_hub_offline_env_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(CorpusError, match="data.dir"):
        load_split(hub_cfg("seq2seq-tests/no-such-corpus"), "train")
    assert time.perf_counter() - started < 10


def test_hub_splits_and_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A local folder passed as a dataset name goes through the same load_dataset(name) path as the hub.
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # keep the user's cache clean
    repo = tmp_path / "multi30k"
    repo.mkdir()
    write(repo / "train.jsonl", jsonl([{"en": "Hello", "de": "Hallo"}, {"en": "", "de": "leer"}]))
    write(repo / "validation.jsonl", jsonl([{"en": "one", "de": "eins"}]))
    write(repo / "test.jsonl", jsonl([{"en": "two", "de": "zwei"}]))
    splits = load_corpus(hub_cfg(str(repo)))
    assert (splits["train"].src, splits["train"].tgt) == (["Hallo"], ["Hello"])
    assert splits["valid"].src == ["eins"]  # valid_prefix "val" is absent: "validation" is used
    assert splits["test"].tgt == ["two"]  # test_prefix "test_2016_flickr" is absent: "test" is used


def test_hub_split_name_choice() -> None:
    cfg = hub_cfg("x")
    assert hub._hub_split_name(cfg, "valid", "val", ["train", "dev", "test"]) == "dev"
    assert hub._hub_split_name(cfg, "test", "test_2016_flickr", ["test", "test_2016_flickr"]) == "test_2016_flickr"
    with pytest.raises(CorpusError, match="available"):
        hub._hub_split_name(cfg, "valid", "val", ["train", "test"])


# --------------------------------------------------------------------------------------------- helpers


def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mydata").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("mydata") == (tmp_path / "mydata").resolve()  # relative to the cwd
    assert resolve_data_dir("seq2seq") == corpus.REPO_ROOT / "seq2seq"  # not in the cwd: the repo root
    assert resolve_data_dir(str(tmp_path / "mydata")) == (tmp_path / "mydata").resolve()
    with pytest.raises(CorpusError) as err:
        resolve_data_dir("nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and str(corpus.REPO_ROOT / "nowhere") in str(err.value)


def test_clean_pairs() -> None:
    src, tgt, counts = clean_pairs([" a ", "", "c", "d"], ["A", "B", "\t", " D"], where="x")
    assert (src, tgt) == (["a", "d"], ["A", "D"])
    assert counts == {"total": 4, "kept": 2, "empty": 2}


def test_length_filter() -> None:
    kept, counts = length_filter([3, 120, 2, 10, 0, 5], [4, 5, 9, 10, 2, 101], max_length=100, max_ratio=3.0)
    # 120 and 101 too long; 9/2 = 4.5 > 3 bad ratio; 2/max(1, 0) = 2 fine
    assert np.flatnonzero(kept).tolist() == [0, 3, 4]
    assert counts == {"too_long": 2, "bad_ratio": 1}


def test_parallel_corpus_must_be_aligned() -> None:
    with pytest.raises(ValueError):
        ParallelCorpus(["a"], [])


def test_embedded_corpus_loads_with_the_default_config() -> None:
    splits = load_corpus(DataConfig())
    assert {name: len(corpus) for name, corpus in splits.items()} == {"train": 20000, "valid": 500, "test": 500}
    assert splits["test"].src[0] and splits["test"].tgt[0]


def test_empty_corpus_after_cleaning_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "   \n\nHallo\n")
    write(tmp_path / "train.en", "x\n  \n\t\n")
    with pytest.raises(CorpusError, match=r"train\.de.*no sentence pairs left after cleaning \(3 lines, 3 with"):
        load_split(local_cfg(tmp_path), "train")
