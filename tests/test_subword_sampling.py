"""Subword regularization: each epoch trains on a segmentation sampled by SentencePiece, a function of
(train.seed, epoch) only, re-encoded from the training text for the pairs the encoded cache kept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import sentencepiece as spm
import torch

from seq2seq.config import Config, ConfigError, TokenizerConfig
from seq2seq.data.batches import epoch_batches
from seq2seq.data.corpus import CHUNK_PAIRS, PairChunk, PairSource, length_filter
from seq2seq.data.encoded import ARRAYS, cache_key
from seq2seq.data.prepare import prepare_data
from seq2seq.data.sampled import sampled_training_set
from seq2seq.data.sampling import SubwordSampler, Uniforms
from seq2seq.data.tokenizer import train_sentencepiece
from seq2seq.training.trainer import Trainer

from .conftest import REPO, cli, tiny_overrides
from .tiny_models import corpus_lines, write_corpus

BLANK = {3, 10, 11, 57}  # raw lines left empty on one side: cleaning drops them, so positions skip them


def write_blanked_corpus(folder, pairs: int = 240):
    """The first `pairs` embedded pairs (some made blank) as train.de/en, and 8 pairs as val and test."""
    write_corpus(folder, train=0, val=8, test=8)
    src, tgt = corpus_lines("train", pairs)
    for i in BLANK:
        (src if i % 2 else tgt)[i] = "  "
    (folder / "train.de").write_text("\n".join(src) + "\n")
    (folder / "train.en").write_text("\n".join(tgt) + "\n")
    return folder


def make_config(tmp_path, model_type: str = "unigram", alpha: float = 0.0, **train) -> Config:
    joint = model_type == "unigram"  # one joint unigram model, and separate BPE models: both paths
    return Config.from_dict(
        {
            "data": {
                "dir": str(write_blanked_corpus(tmp_path / "corpus")),
                "cache_dir": str(tmp_path / "data-cache"),
                "max_length": 55,  # the length filter drops some pairs: positions skip them too
                "preprocess_workers": 0,
            },
            "tokenizer": {
                "type": model_type,
                "vocab_size": 150,
                "joint": joint,
                "cache_dir": str(tmp_path / "spm"),
                "sampling_alpha": alpha,
            },
            "model": {"embedding_size": 8, "hidden_size": 8},
            "train": {"device": "cpu", "insight": False, "batch_tokens": 200, **train},
        }
    )


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("key", "value"),
    [("sampling_alpha", -0.1), ("sampling_alpha", 1.5), ("sampling_alpha", "0.1"), ("nbest_size", 0)]
    + [("nbest_size", 1), ("nbest_size", -2), ("nbest_size", 2.5), ("nbest_size", True)],
)
def test_out_of_range_values_are_config_errors_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"tokenizer.{key}"):
        Config.from_dict({"tokenizer": {key: value}})


def test_allowed_values_and_the_defaults():
    assert (TokenizerConfig().sampling_alpha, TokenizerConfig().nbest_size) == (0.0, -1)
    for alpha in (0.0, 0.1, 1):
        for nbest in (-1, 2, 64):
            Config.from_dict({"tokenizer": {"sampling_alpha": alpha, "nbest_size": nbest}})


# ------------------------------------------------------------------------------------------ the sampler

ODD = ["x€y  ü ﬁ Ω▁ 123,45", "ḉ Ω Ω", "a\tb"]  # unknown characters, NFKC, a literal "▁", a tab


@pytest.fixture(scope="module")
def lines() -> list[str]:
    de, en = corpus_lines("train", 1500)
    return de + en + ODD


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def model(request, lines) -> tuple[str, spm.SentencePieceProcessor]:
    proto = train_sentencepiece(lines[:-3], TokenizerConfig(type=request.param, vocab_size=300))
    return request.param, spm.SentencePieceProcessor(model_proto=proto)


def best_segmentation(sampler: SubwordSampler, line: str) -> list[int]:
    """No sampling: BPE without dropout, or the unigram lattice's best path; unknown runs merged."""
    ids = []
    for word in sampler.sp.normalize(line).replace("\u2581", " \u2581").split(" "):
        if sampler.model_type == "bpe":
            ids += sampler._bpe(word, None)[1]
        elif word:
            best = [(0.0, [])]
            for step in sampler.lattice(word)[1:]:
                best.append(max(((best[s][0] + score, best[s][1] + [i]) for s, i, score in step), key=lambda b: b[0]))
            ids += best[-1][1]
    return [i for i, previous in zip(ids, [-1, *ids]) if i != sampler.unk or previous != sampler.unk]


def test_without_sampling_the_pieces_and_scores_give_sentencepieces_segmentation(model, lines):
    kind, processor = model
    sampler = SubwordSampler(processor, kind, 0.1, -1)
    for line, expected in zip(lines, processor.encode(lines, out_type=int)):
        assert best_segmentation(sampler, line) == expected, line


@pytest.mark.parametrize("nbest_size", [-1, 4])
def test_samples_are_lossless_and_as_long_as_sentencepieces_own(model, lines, nbest_size):
    kind, processor = model
    alpha = 0.1 if kind == "bpe" else 0.3
    sampler = SubwordSampler(processor, kind, alpha, nbest_size)
    ours = sampler.sample(lines, Uniforms(np.random.default_rng(0)))
    assert ours != sampler.sample(lines, Uniforms(np.random.default_rng(1)))
    assert ours == SubwordSampler(processor, kind, alpha, nbest_size).sample(lines, Uniforms(np.random.default_rng(0)))
    assert [processor.decode(ids) for ids in ours] == [processor.decode(ids) for ids in processor.encode(lines)]
    if kind == "bpe" or nbest_size == -1:  # the same distribution as SentencePiece's sampler (n best: of lines)
        theirs = processor.encode(lines, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=nbest_size)
        assert sum(map(len, ours)) == pytest.approx(sum(map(len, theirs)), rel=0.02)
    assert sum(map(len, ours)) > sum(map(len, processor.encode(lines)))


def test_bpe_dropout_of_one_drops_every_merge(lines):
    processor = spm.SentencePieceProcessor(model_proto=train_sentencepiece(lines, TokenizerConfig(type="bpe")))
    ids = SubwordSampler(processor, "bpe", 1.0, -1).sample(["Der Hund"], Uniforms(np.random.default_rng(0)))[0]
    assert [processor.id_to_piece(i) for i in ids] == ["\u2581", "D", "e", "r", "\u2581", "H", "u", "n", "d"]


SAMPLE = """
import hashlib, sys
import numpy as np
import sentencepiece as spm
from seq2seq.data.sampling import SubwordSampler, Uniforms
processor = spm.SentencePieceProcessor(model_file=sys.argv[1])
lines = open(sys.argv[2], encoding="utf-8").read().splitlines()
ids = SubwordSampler(processor, sys.argv[3], 0.2, -1).sample(lines, Uniforms(np.random.default_rng(7)))
print(hashlib.sha256(repr(ids).encode()).hexdigest())
"""


def test_the_same_seed_samples_the_same_in_another_process(model, lines, tmp_path):
    """What SentencePiece's own sampler does not do (sentencepiece 0.2.3): a resumed run, each torchrun
    rank and each worker process must draw the same segmentation."""
    kind, processor = model
    (tmp_path / "m.model").write_bytes(processor.serialized_model_proto())
    (tmp_path / "lines.txt").write_text("\n".join(lines[:300]), encoding="utf-8")
    args = [sys.executable, "-c", SAMPLE, tmp_path / "m.model", tmp_path / "lines.txt", kind]
    runs = [subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) == 65


# ----------------------------------------------------------------------------------- the encoded cache


def test_positions_npy_holds_the_raw_position_of_every_kept_pair(tmp_path):
    config = make_config(tmp_path)
    data = prepare_data(config)
    folder = tmp_path / "data-cache" / cache_key(data.train_source.key, data.tokenizer, config.data)
    positions = np.load(folder / "positions.npy")
    assert positions.dtype == np.int64 and np.array_equal(positions, data.train.positions)
    # the rule, spelt out: non-blank on both sides after stripping, then the length filter in subword tokens
    src = (tmp_path / "corpus" / "train.de").read_text().splitlines()
    tgt = (tmp_path / "corpus" / "train.en").read_text().splitlines()
    clean = [i for i, (s, t) in enumerate(zip(src, tgt)) if s.strip() and t.strip()]
    lengths = [[len(ids) for ids in encode([lines[i].strip() for i in clean])] for lines, encode in
               ((src, data.tokenizer.encode_src), (tgt, data.tokenizer.encode_tgt))]  # fmt: skip
    keep, dropped = length_filter(*lengths, config.data.max_length, config.data.max_length_ratio)
    assert dropped["too_long"] > 0 and not BLANK & set(positions.tolist())
    assert positions.tolist() == np.array(clean)[keep].tolist()
    assert json.loads((folder / "meta.json").read_text())["version"] == 2
    assert {f"{name}.npy" for name in (*ARRAYS, "positions")} <= {p.name for p in folder.iterdir()}


# ------------------------------------------------------------------------------------------- sampling


def trainer_for(tmp_path, model_type: str = "unigram", alpha: float = 0.0) -> Trainer:
    config = make_config(tmp_path, model_type, alpha, max_steps=4)
    return Trainer(config, tmp_path / "run", prepare_data(config))


def arrays(corpus) -> list[np.ndarray]:
    return [np.asarray(getattr(corpus, name)) for name in (*ARRAYS, "positions")]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))


def test_sampling_off_trains_on_the_cached_arrays(tmp_path):
    trainer = trainer_for(tmp_path)
    assert trainer.epoch_pairs.pairs(1) is trainer.data.train and trainer.epoch_pairs.pairs(2) is trainer.data.train
    lengths = trainer.data.train.src_lengths, trainer.data.train.tgt_lengths
    expected = epoch_batches(*lengths, 200, trainer.cfg.seed, 2)
    assert [b.tolist() for step in trainer.global_batches(2) for b in step] == [b.tolist() for b in expected]
    # with both caches in place the training text is not even opened
    assert prepare_data(trainer.config).train_source is None


@pytest.mark.parametrize(("model_type", "alpha"), [("unigram", 0.5), ("bpe", 0.1)])
def test_each_epoch_samples_a_lossless_segmentation_of_the_same_pairs(tmp_path, model_type, alpha, caplog):
    trainer = trainer_for(tmp_path, model_type, alpha)
    data, tok = trainer.data, trainer.data.tokenizer
    with caplog.at_level("INFO"):
        first = trainer.epoch_pairs.pairs(1)
    assert f"train: epoch 1: sampled segmentation (tokenizer.sampling_alpha={alpha:g})" in caplog.text
    assert trainer.epoch_pairs.pairs(1) is first  # built once per epoch
    second = trainer.epoch_pairs.pairs(2)
    assert np.array_equal(first.positions, data.train.positions) and len(first) == len(second) == len(data.train)
    assert not np.array_equal(first.src, second.src) and not np.array_equal(first.tgt, second.tgt)
    assert not np.array_equal(first.src, data.train.src)  # not the deterministic segmentation either
    if model_type == "bpe":  # BPE-dropout only ever undoes merges: more, shorter pieces
        assert len(first.src) > len(data.train.src) and len(first.tgt) > len(data.train.tgt)
    # the same pairs, in the same order, and decoding gives back their text exactly
    pairs = {int(p): (s, t) for c in data.train_source.chunks() for p, s, t in zip(c.positions, c.src, c.tgt)}
    src, tgt = first.pairs(range(len(first)))
    for i, position in enumerate(first.positions.tolist()):
        assert tok.src.decode(src[i].tolist()) == pairs[position][0]
        assert tok.tgt.decode(tgt[i].tolist()) == pairs[position][1]
    # the epoch's batches are cut from the sampled lengths
    expected = epoch_batches(second.src_lengths, second.tgt_lengths, 200, trainer.cfg.seed, 2)
    assert [b.tolist() for step in trainer.global_batches(2) for b in step] == [b.tolist() for b in expected]
    # a new trainer (a resumed run) rebuilds exactly the same epoch
    assert same(Trainer(trainer.config, tmp_path / "other", data).epoch_pairs.pairs(2), second)


class SmallChunks:
    """The training split read 37 raw pairs at a time: several chunks, so several seeds, for a few pairs."""

    def __init__(self, source: PairSource) -> None:
        self.source, self.key, self.raw_pairs = source, source.key, source.raw_pairs

    def chunks(self, size: int = CHUNK_PAIRS, desc: str | None = None) -> Iterator[PairChunk]:  # noqa: ARG002
        return self.source.chunks(37)


def test_the_sample_depends_on_seed_and_epoch_not_on_the_worker_processes(tmp_path):
    trainer = trainer_for(tmp_path, "unigram", 0.3)
    data, cfg = trainer.data, trainer.config.tokenizer
    corpus = SmallChunks(data.train_source)
    assert len(list(corpus.chunks())) > 4

    def sample(seed: int, epoch: int, workers: int):
        return sampled_training_set(corpus, data.train.positions, data.tokenizer, cfg, seed, epoch, workers)

    in_process = sample(1, 3, 0)
    assert same(in_process, sample(1, 3, 2)) and same(in_process, sample(1, 3, 0))
    assert not same(in_process, sample(2, 3, 0)) and not same(in_process, sample(1, 4, 0))


def test_sampling_needs_the_training_text(tmp_path):
    trainer = trainer_for(tmp_path, "unigram", 0.3)
    data = trainer.data
    data.train_source = None
    with pytest.raises(ConfigError, match="tokenizer.sampling_alpha"):
        Trainer(trainer.config, tmp_path / "again", data)


# ---------------------------------------------------------------------------------------- resume


@pytest.mark.slow  # trains in a subprocess
def test_a_run_with_sampling_resumes_bitwise_exactly(tmp_path, spm_cache):
    from .test_resume import interrupt, weights

    def overrides(run_dir):
        return [
            *tiny_overrides(spm_cache, pairs=60, steps=12),  # 7 batches in epoch 1
            "tokenizer.sampling_alpha=0.3",
            "data.preprocess_workers=0",
            "train.validate_every=5",
            "model.dropout=0.3",
            "train.threads=1",
            f"hydra.run.dir={run_dir}",
        ]

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    done = cli("train", *overrides(straight))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert "train: epoch 2: sampled segmentation (tokenizer.sampling_alpha=0.3)" in out  # the run crosses epochs
    code, log = interrupt(overrides(interrupted), 9, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, log[-2000:]
    stopped = weights(interrupted)["train_state"]
    assert stopped["epoch"] >= 2 and stopped["epoch_step"] > 0  # stopped in the middle of a sampled epoch
    resumed = cli("train", *overrides(interrupted), "train.resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = resumed.stdout + resumed.stderr
    assert f"train: epoch {stopped['epoch']}: sampled segmentation" in out and "resumed at step" in out
    a, b = weights(straight), weights(interrupted)
    assert a["step"] == b["step"] == 12
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
