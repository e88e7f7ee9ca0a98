"""`results.json`, typed: what a finished run reports, written by training and read by `seq2seq.report`.

{"test": {"greedy": {...}, "beam": {...}, "averaged"?: {"greedy", "beam"}},
 "valid": {"best_bleu", "best_step", "history", "averaged_bleu"?, "averaged_steps"?},
 "train": {"steps", "epochs", "minutes", ..., "tokens_per_sec", "corpora"}, "checkpoint": PATH}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from seq2seq.files import write_atomic
from seq2seq.metrics import Scores

# what a validation measures: the keys of its history row and of its `valid/*` TensorBoard scalars
VALIDATION_KEYS = ("loss", "perplexity", "bleu", "chrf", "ter", "teacher_forced_bleu", "exposure_bias_gap")


@dataclass
class SearchScores:
    """One search's scores on a test set."""

    beam_size: int  # 1: greedy
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences_per_sec: float
    ter: float | None = None  # (older results.json files lack TER)
    ter_signature: str | None = None
    pairs: dict[str, dict[str, float]] | None = None  # a multilingual test set: {"en-fr": {"bleu", "chrf"}, ...}

    @classmethod
    def measured(cls, beam_size: int, scores: Scores, sentences: int, seconds: float) -> SearchScores:
        return cls(beam_size, **scores.to_dict(), sentences_per_sec=round(sentences / max(seconds, 1e-9), 1))  # type: ignore[arg-type]


@dataclass
class CheckpointScores:
    """A checkpoint's test scores with greedy and beam search; `averaged`: the averaged checkpoint's, if any."""

    greedy: SearchScores
    beam: SearchScores
    averaged: CheckpointScores | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"greedy": _without_none(self.greedy), "beam": _without_none(self.beam)}
        if self.averaged is not None:
            out["averaged"] = self.averaged.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CheckpointScores:
        averaged = cls.from_dict(raw["averaged"]) if raw.get("averaged") else None
        return cls(_build(SearchScores, raw["greedy"]), _build(SearchScores, raw["beam"]), averaged)


@dataclass
class ValidSummary:
    best_bleu: float  # greedy validation BLEU of best.pt
    best_step: int
    history: list[dict[str, float]] = field(default_factory=list)  # one row per validation
    averaged_bleu: float | None = None  # train.average_checkpoints: the averaged checkpoint's validation BLEU
    averaged_steps: list[int] | None = None  # ... and the steps it averages


@dataclass
class TrainSummary:
    steps: int
    epochs: int
    minutes: float  # the training loop
    total_minutes: float  # data, tokenizer, training, testing
    parameters: int
    tokens_per_sec: float | None  # median over log windows (the whole run when no window closed)
    device: str
    precision: str = "fp32"  # (older results.json files lack these)
    processes: int = 1
    corpora: list[dict[str, Any]] | None = None  # each training corpus: name, pair, tags, weight, pairs (kept)


@dataclass
class RunResults:
    test: CheckpointScores
    valid: ValidSummary
    train: TrainSummary
    checkpoint: str  # the model to translate with: best.pt, or averaged.pt when its validation BLEU is higher

    @property
    def test_scores(self) -> CheckpointScores:
        """The scores of `checkpoint`, the test model."""
        if self.test.averaged is not None and self.checkpoint.endswith("averaged.pt"):
            return self.test.averaged
        return self.test

    def to_dict(self) -> dict[str, Any]:
        valid = {k: v for k, v in asdict(self.valid).items() if v is not None}
        return {"test": self.test.to_dict(), "valid": valid, "train": asdict(self.train), "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunResults:
        return cls(
            CheckpointScores.from_dict(raw["test"]),
            _build(ValidSummary, raw["valid"]),
            _build(TrainSummary, raw["train"]),
            raw["checkpoint"],
        )

    def save(self, path: Path) -> None:
        write_atomic(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode())  # never half a file

    @classmethod
    def load(cls, path: Path) -> RunResults:
        """Read `results.json`; a missing key or a broken file raises ValueError (OSError when unreadable)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a results.json of this version ({exc})") from None


def _without_none(scores: SearchScores) -> dict[str, Any]:
    return {k: v for k, v in asdict(scores).items() if v is not None}


def _build(cls: Any, raw: dict[str, Any]) -> Any:
    """A dataclass from a dict, keeping only its own fields (files written by other versions may hold more)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})
