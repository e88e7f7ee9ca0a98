"""A run's checkpoints: which files it keeps, how a training state becomes a payload and back, and resuming.

`checkpoints/last.pt` is written at every validation (and when a signal stops training), `best.pt`
when validation BLEU improves, and with `train.average_checkpoints=N` (N >= 2) also `step_{N}.pt`,
of which the last N are kept and, after training, averaged into `averaged.pt`. Every file is one
self-contained checkpoint (`seq2seq.checkpoint`): written atomically, loaded with weights_only.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import average_state_dicts, load_checkpoint, save_checkpoint
from seq2seq.config import Config, ConfigError

log = logging.getLogger("seq2seq.training.trainer")

RESUME_MUST_MATCH = ("model.", "tokenizer.")  # what a resumed run may not change
RESUME_MAY_DIFFER = ("tokenizer.cache_dir", "data.cache_dir", "train.resume")


class CheckpointSaver:
    """Writes and rotates the checkpoints in `ckpt_dir` (rank 0 only: `enabled=False` elsewhere)."""

    def __init__(self, ckpt_dir: Path, keep_steps: int = 0, enabled: bool = True) -> None:
        self.dir, self.keep_steps, self.enabled = Path(ckpt_dir), keep_steps, enabled

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def save(self, payload: dict[str, Any], step: int, best: bool) -> None:
        """A validation's checkpoints: last.pt, best.pt when `best`, and the kept step_{step}.pt."""
        if not self.enabled:
            return
        save_checkpoint(self.last, payload)
        if best:
            save_checkpoint(self.best, payload)
        if self.keep_steps >= 2:
            self.save_step(payload, step)

    def save_last(self, payload: dict[str, Any]) -> None:
        if self.enabled:
            save_checkpoint(self.last, payload)

    def save_step(self, payload: dict[str, Any], step: int) -> None:
        """Save `step_{step}.pt`; keep the last `keep_steps` of them."""
        save_checkpoint(self.dir / f"step_{step}.pt", payload)
        paths = self.step_checkpoints()
        # a step beyond this one can only be left by an abandoned run that this one resumed from an earlier checkpoint
        keep = [p for p in paths if checkpoint_step(p) <= step][-self.keep_steps :]
        for path in paths:
            if path not in keep:
                path.unlink(missing_ok=True)

    def step_checkpoints(self) -> list[Path]:
        """`step_{step}.pt` files, oldest first."""
        paths = [p for p in self.dir.glob("step_*.pt") if p.stem.removeprefix("step_").isdigit()]
        return sorted(paths, key=checkpoint_step)

    def average(self) -> tuple[Path, list[int]] | None:
        """Average the kept step checkpoints into `averaged.pt`; returns (its path, the steps), or None.

        `averaged.pt` is the newest step checkpoint with its weights replaced by the average (so it is as
        self-contained as `best.pt`), plus `averaged_steps`. None when averaging is off or fewer than two
        step checkpoints exist.
        """
        if self.keep_steps < 2:
            return None
        paths = self.step_checkpoints()[-self.keep_steps :]
        if len(paths) < 2:
            log.info("checkpoint averaging: %d validation checkpoint(s), nothing to average", len(paths))
            return None
        steps = [checkpoint_step(p) for p in paths]
        newest = load_checkpoint(paths[-1])
        weights = [load_checkpoint(p)["model"] for p in paths[:-1]] + [newest["model"]]
        path = self.dir / "averaged.pt"
        save_checkpoint(path, {**newest, "model": average_state_dicts(weights), "averaged_steps": steps})
        return path, steps


def checkpoint_step(path: Path) -> int:
    return int(path.stem.removeprefix("step_"))


# -------------------------------------------------------------------- random state
def rng_states(teacher_forcing: torch.Generator) -> dict[str, Any]:
    """Every random generator training draws from (dropout, Python, the teacher-forcing coin, CUDA)."""
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "teacher_forcing": teacher_forcing.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng_states(rng: dict[str, Any], teacher_forcing: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuples(rng["python"]))
    teacher_forcing.set_state(rng["teacher_forcing"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuples(value: Any) -> Any:
    """`random.setstate` wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# -------------------------------------------------------------------------- resume
def find_resume_checkpoint(config: Config, run_dir: Path) -> Path | None:
    """`train.resume`: a checkpoint path, `auto` (`run_dir/checkpoints/last.pt` if it exists), or null."""
    resume = config.train.resume
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        if last.is_file():
            return last
        log.info("train.resume=auto: no %s yet, starting a new run", last)
        return None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise ConfigError(f"train.resume={resume!r}: no such checkpoint file")
    return path


def check_resume_config(saved: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse to resume when the model or tokenizer settings differ; log the training-time keys that do."""
    before, after = _flatten(saved), _flatten(config.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    changed = [k for k in changed if k not in RESUME_MAY_DIFFER]
    refused = [k for k in changed if k.startswith(RESUME_MUST_MATCH)]
    if refused:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in refused)
        raise ConfigError(f"cannot resume from {path}: the model or tokenizer would change ({details})")
    if changed:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed)
        log.info("resuming from %s with changed settings: %s", path, details)
    else:
        log.info("resuming from %s", path)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
