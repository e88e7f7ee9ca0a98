"""Typed configuration: one dataclass per concern, validated before any work starts.

The library only ever sees these plain objects; Hydra lives in the entry points
(`seq2seq/train.py` and `conf/`). `Config.from_dict` turns a nested dict (what
`OmegaConf.to_object` gives) into dataclasses, so an unknown key is an error at
start-up that names the key, and `Config.validate` checks every value's range.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

CELLS = ("rnn", "lstm", "gru")
ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")
SOURCES = ("auto", "local", "hub")
FORMATS = ("text", "tsv", "jsonl")
SPM_TYPES = ("unigram", "bpe")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("none", "plateau", "warmup_decay")
TF_SCHEDULES = ("constant", "linear", "inverse_sigmoid")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
FREEZE_PARTS = ("embeddings", "encoder", "decoder", "attention", "output")
MATMUL_PRECISIONS = ("auto", "fp32", "bf16")


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; the message names the key."""


@dataclass
class CorpusConfig:
    """One more training corpus, an entry of `data.corpora` (back-translations, another domain, another
    language pair). A key left null takes the main corpus's value (`data.*`): `{prefix: train_bt, tag: "<BT>"}`
    is another pair of files in the main corpus's folder. Only its training pairs are read."""

    name: str | None = None  # a label for logs and results.json (null: the folder or dataset, and the prefix)
    source: str | None = None  # auto | local | hub (null: auto when dir or hub_name is given, else data.source)
    format: str | None = None  # text | tsv | jsonl (null: data.format)
    dir: str | None = None  # local folder (null, with no hub_name either: data.dir)
    hub_name: str | None = None  # a hub dataset (null, with no dir either: data.hub_name)
    hub_config: str | None = None  # the hub dataset's configuration (null: data.hub_config for the same dataset)
    src_lang: str | None = None  # null: data.src_lang
    tgt_lang: str | None = None  # null: data.tgt_lang
    prefix: str | None = None  # the training split's file stem or hub split (null: data.train_prefix)
    tag: str | None = None  # before every source sentence, one subword piece: <BT> (tagged back-translation)
    weight: float = 1.0  # pairs per epoch = weight x kept pairs: 2 repeats each pair, 0.5 takes a random half
    max_pairs: int | None = None  # keep only the first N pairs of this corpus (null: all)


@dataclass
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned."""

    name: str = "synth_de_en"  # a label for logs and reports
    source: str = "auto"  # auto (local when dir is set, else hub) | local | hub
    format: str = "text"  # local files: text (PREFIX.LANG[.gz]) | tsv (src<TAB>tgt) | jsonl ({"translation": {...}})
    dir: str | None = "data/synth_de_en"  # local folder; relative paths resolve against cwd, then the repo root
    hub_name: str | None = None  # e.g. bentrevett/multi30k, wmt14
    hub_config: str | None = None  # e.g. de-en for wmt14
    src_lang: str = "de"  # source language code: the file suffix (PREFIX.de), the JSONL/hub key
    tgt_lang: str = "en"  # target language code, as src_lang
    train_prefix: str = "train"  # training split: file stem for local files, split name on the hub
    valid_prefix: str = "val"  # validation split: file stem, or hub split name
    test_prefix: str = "test"  # test split: file stem, or hub split name
    max_length: int = 100  # training pairs longer than this (subword tokens, either side) are dropped
    max_length_ratio: float = 3.0  # training pairs whose token-length ratio exceeds this are dropped
    max_train_pairs: int | None = None  # keep only the first N training pairs (quick experiments, tests)
    cache_dir: str | None = "~/.cache/seq2seq/data"  # the encoded training set, built once (null: encode every run)
    preprocess_workers: int | None = None  # processes that encode the training set (null: one per CPU core; 0: none)
    tag: str | None = None  # the main corpus's source tag (as data.corpora's), also on its validation and test sources
    weight: float = 1.0  # the main corpus's sampling weight per epoch (as data.corpora's)
    corpora: list[CorpusConfig] = field(default_factory=list)  # more training corpora, trained on with the main one
    target_tags: bool = False  # multilingual: every source starts with <2xx>, xx its corpus's tgt_lang (Johnson+ 2017)

    @property
    def resolved_source(self) -> str:
        """`local` or `hub`: with source=auto, a set `dir` means local files."""
        if self.source != "auto":
            return self.source
        return "local" if self.dir else "hub"


@dataclass
class TokenizerConfig:
    """SentencePiece subword model(s), trained once on the training split and cached."""

    type: str = "unigram"  # unigram | bpe
    vocab_size: int = 1000  # subword vocabulary size (a small corpus may give fewer)
    joint: bool = True  # one model for both languages, or one per side
    character_coverage: float = 1.0  # share of characters covered (0.9995 for large alphabets)
    sample_sentences: int = 2_000_000  # SentencePiece trains on at most this many sentences per model (a random sample)
    sampling_alpha: float = 0.0  # subword regularization (0: off): unigram's smoothing alpha, or the BPE-dropout rate
    nbest_size: int = -1  # unigram sampling draws from the n best segmentations (-1: from all of them)
    cache_dir: str = (
        "~/.cache/seq2seq/spm"  # trained models are cached here, keyed by a hash of the settings and the text
    )


@dataclass
class ModelConfig:
    """The encoder-decoder; everything needed to rebuild it travels in the checkpoint."""

    cell: str = "gru"  # rnn (tanh) | lstm | gru
    attention: str = "bahdanau"  # none | bahdanau | luong_dot | luong_general
    embedding_size: int = 96  # source and target embedding size
    hidden_size: int = 192  # recurrent state size (per direction in the encoder)
    encoder_layers: int = 1  # stacked encoder layers
    decoder_layers: int = 1  # stacked decoder layers
    bidirectional: bool = True  # bidirectional encoder
    dropout: float = 0.2  # between layers and on embeddings / readout
    readout_size: int | None = None  # pre-output layer width; null: embedding_size
    input_feeding: bool = True  # feed the last attentional vector back (attention only); false: fused RNN in training
    tie_embeddings: bool = False  # target embedding shares the output projection (needs readout_size == embedding_size)


@dataclass
class TrainConfig:
    """The optimisation loop."""

    seed: int = 1234  # seeds initialisation, batch order, dropout and teacher-forcing draws
    device: str = "auto"  # auto | cpu | cuda | mps
    threads: int | None = None  # torch CPU threads; null: torch's default
    reuse_freed_memory: bool = True  # Linux (glibc): freed blocks of any size stay for reuse, not unmapped
    batch_tokens: int = 2000  # token budget per batch (max(src, tgt) length x sentences)
    max_steps: int | None = None  # stop after this many updates (null: no limit); the first of the three limits stops
    max_epochs: int | None = 3  # stop after this many passes over the training data (null: no limit)
    max_minutes: float | None = None  # wall-clock budget for the training loop
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 4e-3  # learning rate (warmup_decay: the peak, reached after warmup_steps)
    weight_decay: float = 0.0  # weight decay (L2 for adam/sgd, decoupled for adamw)
    momentum: float = 0.9  # sgd only
    lr_scheduler: str = "plateau"  # none | plateau (on val BLEU) | warmup_decay
    lr_decay_factor: float = 0.5  # plateau: multiply the lr by this
    lr_patience: int = 2  # plateau: validations without improvement before decaying
    lr_min: float = 1e-5  # plateau: the learning rate never goes below this
    warmup_steps: int = 500  # warmup_decay: linear warm-up, then inverse square root decay
    label_smoothing: float = 0.1  # label smoothing of the training loss (validation loss has none)
    clip_grad_norm: float | None = 1.0  # clip the global gradient norm to this (null: off)
    clip_grad_value: float | None = None  # clip every gradient element to [-v, v] (null: off)
    teacher_forcing_ratio: float = 1.0  # fraction of decoder steps fed the gold previous token
    teacher_forcing_schedule: str = "constant"  # constant | linear | inverse_sigmoid (scheduled sampling)
    teacher_forcing_min: float = 0.0  # linear: the ratio reached at teacher_forcing_decay_steps
    teacher_forcing_decay_steps: int = 10000  # linear: steps to go from the ratio to the min
    teacher_forcing_k: float = 1000.0  # inverse_sigmoid: ratio_t = k / (k + exp(t / k))
    validate_every: int = 200  # steps between validations (and one at the end of training)
    early_stopping_patience: int | None = 5  # validations without a BLEU gain before stopping (null: off)
    log_every: int = 50  # steps between train-loss log lines / scalars
    num_samples: int = 3  # translations shown in the log and TensorBoard at each validation
    max_valid_sentences: int | None = None  # validate on the first N val sentences only (null: all)
    test_beam_size: int = 5  # beam size for the final test scoring
    max_bad_steps: int = 10  # stop when more steps than this in a row have a non-finite loss or gradient
    resume: str | None = None  # continue a run: a checkpoint path, or auto (run_dir/checkpoints/last.pt)
    init_from: str | None = None  # fine-tune: a new run from this checkpoint's (or run folder's) weights and subwords
    freeze: list[str] = field(
        default_factory=list
    )  # with init_from: parts kept fixed: embeddings, encoder, decoder, attention, output
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA or a CPU with bf16) | fp16 (CUDA, with a gradient scaler)
    matmul_precision: str = "auto"  # decoder/output training products: auto (measured: the faster) | fp32 | bf16
    insight: bool = True  # at each validation: attention heatmaps, gate statistics, gradient by source distance
    insight_sentences: int = 4  # the fixed validation sentences the insight pictures and statistics use
    average_checkpoints: int = 0  # N >= 2: keep the last N validation checkpoints, average them after training


@dataclass
class DecodeConfig:
    """Greedy / beam search (or sampling) settings used by validation, test scoring and translate."""

    beam_size: int = 1  # 1 = greedy
    alpha: float = 0.6  # length penalty ((5 + len) / 6) ** alpha; 0 = none
    coverage_penalty: float = 0.0  # beam search: GNMT's beta x sum log(min(attention received, 1)); 0 = none
    max_len_a: float = 1.5  # max output length = a * src_len + b
    max_len_b: int = 10  # the b of max output length = a * src_len + b
    nbest: int = 1  # hypotheses returned per sentence (at most beam_size; with sampling: independent samples)
    batch_size: int = 64  # sentences per decoding batch
    sampling: bool = False  # draw each output token from the model's distribution instead of searching (beam_size 1)
    top_k: int = 0  # sampling: draw from the k most probable tokens only; 0 = all, 1 = greedy
    top_p: float = 1.0  # sampling: from the fewest most probable tokens whose probability reaches p (nucleus)
    epsilon: float = 0.0  # sampling: never draw a token whose probability is below epsilon
    temperature: float = 1.0  # sampling: divides the log-probabilities; < 1 sharper, > 1 flatter
    seed: int = 0  # sampling: with each source sentence, decides its samples (whatever the batching)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Build from a nested dict; unknown sections or keys raise `ConfigError` naming them."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; allowed: {sorted(sections)}")
        kwargs = {}
        for name, value in raw.items():
            kwargs[name] = _build_section(name, sections[name].default_factory, value or {})  # type: ignore[misc]
        config = cls(**kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first key whose value is out of range."""
        validate_data(self.data)
        validate_tokenizer(self.tokenizer)
        validate_model(self.model)
        validate_train(self.train)
        validate_decode(self.decode)


def validate_data(d: DataConfig) -> None:
    _choice("data.source", d.source, SOURCES)
    _choice("data.format", d.format, FORMATS)
    if d.source == "auto" and not d.dir and not d.hub_name:
        raise ConfigError("data.dir (local files) or data.hub_name (a hub dataset) must be set")
    if d.source == "local" and not d.dir:
        raise ConfigError("data.dir must name a folder when data.source=local")
    if d.source == "hub" and not d.hub_name:
        raise ConfigError("data.hub_name must name a dataset when data.source=hub")
    if d.src_lang == d.tgt_lang:
        raise ConfigError(f"data.src_lang and data.tgt_lang must differ (both {d.src_lang!r})")
    _positive("data.max_length", d.max_length)
    _at_least("data.max_length_ratio", d.max_length_ratio, 1.0)
    if d.max_train_pairs is not None:
        _positive("data.max_train_pairs", d.max_train_pairs)
    if d.preprocess_workers is not None:
        _at_least("data.preprocess_workers", d.preprocess_workers, 0)
    _check_tag("data.tag", d.tag)
    _check_weight("data.weight", d.weight)
    for i, entry in enumerate(d.corpora):
        where = f"data.corpora[{i}]"
        if entry.source is not None:
            _choice(f"{where}.source", entry.source, SOURCES)
        if entry.format is not None:
            _choice(f"{where}.format", entry.format, FORMATS)
        if entry.source == "local" and not entry.dir:
            raise ConfigError(f"{where}.dir must name a folder when {where}.source=local")
        if entry.source == "hub" and not entry.hub_name:
            raise ConfigError(f"{where}.hub_name must name a dataset when {where}.source=hub")
        src, tgt = entry.src_lang or d.src_lang, entry.tgt_lang or d.tgt_lang
        if src == tgt:
            raise ConfigError(f"{where}: the source and target languages must differ (both {src!r})")
        _check_tag(f"{where}.tag", entry.tag)
        _check_weight(f"{where}.weight", entry.weight)
        if entry.max_pairs is not None:
            _positive(f"{where}.max_pairs", entry.max_pairs)
    if d.target_tags:
        for i, lang in enumerate([d.tgt_lang, *(entry.tgt_lang for entry in d.corpora)]):
            where = "data.tgt_lang" if i == 0 else f"data.corpora[{i - 1}].tgt_lang"
            if lang is not None:
                _check_tag(f"{where} (data.target_tags)", target_tag(lang))


TAG_PATTERN = re.compile(r"<[^\s<>\u2581]+>")


def target_tag(lang: str) -> str:
    """The source-side tag asking a multilingual model for output in `lang` (`data.target_tags`): <2fr>."""
    return f"<2{lang}>"


def _check_tag(key: str, tag: Any) -> None:
    """A tag is one token in angle brackets (no spaces), so that it is one subword piece of its own."""
    if tag is not None and (not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag)):
        raise ConfigError(
            f"{key}={tag!r} is not a single token: a tag is one word in angle brackets, such as <BT> (no spaces), "
            "so that it stays one subword piece"
        )


def _check_weight(key: str, weight: Any) -> None:
    if not _is_number(weight) or not 0 < weight < float("inf"):
        raise ConfigError(f"{key} must be a number > 0 (pairs per epoch = weight x kept pairs), got {weight!r}")


def validate_tokenizer(tok: TokenizerConfig) -> None:
    _choice("tokenizer.type", tok.type, SPM_TYPES)
    _at_least("tokenizer.vocab_size", tok.vocab_size, 8)
    _in_range("tokenizer.character_coverage", tok.character_coverage, 0.9, 1.0)
    _at_least("tokenizer.sample_sentences", tok.sample_sentences, 1000)
    _in_range("tokenizer.sampling_alpha", tok.sampling_alpha, 0.0, 1.0)
    n = tok.nbest_size
    if not isinstance(n, int) or isinstance(n, bool) or not (n == -1 or n >= 2):
        raise ConfigError(
            "tokenizer.nbest_size must be -1 (sample from every segmentation) or an integer >= 2 (from the n "
            f"best; 0 and 1 would be the best segmentation only), got {n!r}"
        )


def validate_model(m: ModelConfig) -> None:
    _choice("model.cell", m.cell, CELLS)
    _choice("model.attention", m.attention, ATTENTIONS)
    for key in ("embedding_size", "hidden_size", "encoder_layers", "decoder_layers"):
        _positive(f"model.{key}", getattr(m, key))
    _in_range("model.dropout", m.dropout, 0.0, 0.99)
    if m.readout_size is not None:
        _positive("model.readout_size", m.readout_size)
    if m.attention == "luong_dot" and m.bidirectional:
        raise ConfigError(
            "model.attention=luong_dot scores q.k, so the encoder outputs must be as wide as the decoder state; "
            "set model.bidirectional=false or use model.attention=luong_general"
        )
    if m.tie_embeddings and (m.readout_size or m.embedding_size) != m.embedding_size:
        raise ConfigError(
            "model.tie_embeddings needs model.readout_size == model.embedding_size "
            f"(got {m.readout_size} and {m.embedding_size})"
        )


def validate_train(t: TrainConfig) -> None:
    """The loop's budgets, validation and bookkeeping keys; then the optimisation ones."""
    _choice("train.device", t.device, DEVICES)
    if t.threads is not None:
        _positive("train.threads", t.threads)
    _positive("train.batch_tokens", t.batch_tokens)
    if t.max_steps is None and t.max_epochs is None and t.max_minutes is None:
        raise ConfigError("set at least one of train.max_steps, train.max_epochs, train.max_minutes")
    for key in ("max_steps", "max_epochs"):
        if getattr(t, key) is not None:
            _positive(f"train.{key}", getattr(t, key))
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise ConfigError(f"train.max_minutes must be > 0, got {t.max_minutes}")
    _validate_optimisation(t)
    _positive("train.validate_every", t.validate_every)
    if t.early_stopping_patience is not None:
        _positive("train.early_stopping_patience", t.early_stopping_patience)
    _positive("train.log_every", t.log_every)
    _at_least("train.num_samples", t.num_samples, 0)
    if t.max_valid_sentences is not None:
        _positive("train.max_valid_sentences", t.max_valid_sentences)
    _positive("train.test_beam_size", t.test_beam_size)
    _at_least("train.max_bad_steps", t.max_bad_steps, 0)
    if t.resume is not None and not str(t.resume).strip():
        raise ConfigError("train.resume must be a checkpoint path, auto, or null")
    if t.init_from is not None and not str(t.init_from).strip():
        raise ConfigError("train.init_from must be a checkpoint path or run folder, or null")
    if isinstance(t.freeze, str) or not all(isinstance(part, str) for part in t.freeze):
        raise ConfigError(f"train.freeze must be a list such as [embeddings, encoder], got {t.freeze!r}")
    for part in t.freeze:
        _choice("train.freeze", part, FREEZE_PARTS)
    if t.freeze and t.init_from is None:
        raise ConfigError(
            "train.freeze keeps trained parts fixed: it needs train.init_from (a checkpoint to start from)"
        )
    _choice("train.precision", t.precision, PRECISIONS)
    _choice("train.matmul_precision", t.matmul_precision, MATMUL_PRECISIONS)
    _positive("train.insight_sentences", t.insight_sentences)
    n = t.average_checkpoints
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ConfigError(
            f"train.average_checkpoints must be a non-negative integer (0 or 1: off, N >= 2: average the last N "
            f"validation checkpoints), got {n!r}"
        )


def _validate_optimisation(t: TrainConfig) -> None:
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    _at_least("train.weight_decay", t.weight_decay, 0.0)
    _in_range("train.momentum", t.momentum, 0.0, 1.0)
    _choice("train.lr_scheduler", t.lr_scheduler, LR_SCHEDULERS)
    _in_range("train.lr_decay_factor", t.lr_decay_factor, 0.0, 1.0)
    _at_least("train.lr_patience", t.lr_patience, 0)
    _at_least("train.lr_min", t.lr_min, 0.0)
    _at_least("train.warmup_steps", t.warmup_steps, 0)
    _in_range("train.label_smoothing", t.label_smoothing, 0.0, 0.99)
    for key in ("clip_grad_norm", "clip_grad_value"):
        value = getattr(t, key)
        if value is not None and value <= 0:
            raise ConfigError(f"train.{key} must be > 0 or null (off), got {value}")
    _in_range("train.teacher_forcing_ratio", t.teacher_forcing_ratio, 0.0, 1.0)
    _choice("train.teacher_forcing_schedule", t.teacher_forcing_schedule, TF_SCHEDULES)
    _in_range("train.teacher_forcing_min", t.teacher_forcing_min, 0.0, 1.0)
    _positive("train.teacher_forcing_decay_steps", t.teacher_forcing_decay_steps)
    if t.teacher_forcing_k < 1:
        raise ConfigError(f"train.teacher_forcing_k must be >= 1, got {t.teacher_forcing_k}")


def validate_decode(dec: DecodeConfig) -> None:
    _positive("decode.beam_size", dec.beam_size)
    _at_least("decode.alpha", dec.alpha, 0.0)
    _at_least("decode.coverage_penalty", dec.coverage_penalty, 0.0)
    _at_least("decode.max_len_a", dec.max_len_a, 0.0)
    _at_least("decode.max_len_b", dec.max_len_b, 0)
    if dec.max_len_a == 0 and dec.max_len_b == 0:
        raise ConfigError("decode.max_len_a and decode.max_len_b cannot both be 0")
    _positive("decode.nbest", dec.nbest)
    if dec.sampling and dec.beam_size != 1:
        raise ConfigError(
            f"decode.sampling draws each output instead of searching: decode.beam_size must be 1, not {dec.beam_size}"
        )
    if dec.nbest > dec.beam_size and not dec.sampling:
        raise ConfigError(f"decode.nbest ({dec.nbest}) cannot exceed decode.beam_size ({dec.beam_size})")
    _positive("decode.batch_size", dec.batch_size)
    _at_least("decode.top_k", dec.top_k, 0)
    if isinstance(dec.top_k, float):
        raise ConfigError(f"decode.top_k must be an integer >= 0, got {dec.top_k!r}")
    if not _is_number(dec.top_p) or not 0 < dec.top_p <= 1:
        raise ConfigError(f"decode.top_p must be in (0, 1], got {dec.top_p!r}")
    if not _is_number(dec.epsilon) or not 0 <= dec.epsilon < 1:
        raise ConfigError(f"decode.epsilon must be in [0, 1), got {dec.epsilon!r}")
    if not _is_number(dec.temperature) or not dec.temperature > 0:  # `not >`: NaN too
        raise ConfigError(f"decode.temperature must be a number > 0, got {dec.temperature!r}")
    if not isinstance(dec.seed, int) or isinstance(dec.seed, bool) or dec.seed < 0:
        raise ConfigError(f"decode.seed must be an integer >= 0, got {dec.seed!r}")


def _build_section(name: str, factory: Any, values: dict[str, Any]) -> Any:
    cls = type(factory())
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError("; ".join(unknown_key_message(f"{name}.{k}") for k in unknown))
    if cls is DataConfig and values.get("corpora"):
        values = {**values, "corpora": _corpus_entries(values["corpora"])}
    return cls(**values)


def _corpus_entries(raw: Any) -> list[CorpusConfig]:
    """`data.corpora` as `CorpusConfig`s (from dicts, as YAML and the command line give them)."""
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"data.corpora must be a list of corpora such as [{{dir: PATH, tag: <BT>}}], got {raw!r}")
    allowed = {f.name for f in dataclasses.fields(CorpusConfig)}
    entries = []
    for i, entry in enumerate(raw):
        if isinstance(entry, CorpusConfig):
            entries.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"data.corpora[{i}] must be a mapping such as {{dir: PATH, tag: <BT>}}, got {entry!r}")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in data.corpora[{i}]; allowed: {sorted(allowed)}")
        entries.append(CorpusConfig(**entry))
    return entries


def config_keys() -> list[str]:
    """Every `section.key` the dataclasses define, e.g. `train.lr`."""
    sections = {f.name: f.default_factory() for f in dataclasses.fields(Config)}  # type: ignore[misc]
    return [f"{name}.{f.name}" for name, section in sections.items() for f in dataclasses.fields(section)]


def closest_key(key: str) -> str | None:
    """The known key a misspelt `key` most likely means: one whose words start it (`train.lr` for
    `train.lr_rate`), else the closest spelling (`model.hidden_size` for `model.hiden_size`)."""
    keys = config_keys()
    section, _, name = key.rpartition(".")
    words = name.split("_")
    prefixes = [
        k
        for k in keys
        if k.startswith(section + ".") and words[: len(k.split(".")[-1].split("_"))] == k.split(".")[-1].split("_")
    ]
    if prefixes:
        return max(prefixes, key=len)
    names = [k.split(".")[-1] for k in keys if k.startswith(section + ".")]
    if names:  # a known section: compare the names within it
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        return f"{section}.{close[0]}" if close else None
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_message(key: str) -> str:
    """One line for a key no dataclass defines, with the closest known key when there is one."""
    close = closest_key(key)
    hint = f"; did you mean {close}?" if close else "; the keys are listed in docs/configuration.md"
    return f"unknown config key {key}{hint}"


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _is_number(value: Any) -> bool:
    """An int or float, not a bool (True is an int to Python, not a number to a config)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at_least(key: str, value: Any, low: float) -> None:
    if not _is_number(value) or value < low:
        raise ConfigError(f"{key} must be a number >= {low}, got {value!r}")


def _in_range(key: str, value: Any, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise ConfigError(f"{key} must be in [{low}, {high}], got {value!r}")
