"""When training stops: early stopping on validation BLEU, the step/epoch/time limits, and signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from seq2seq.config import TrainConfig

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped training at a step boundary; `last.pt` holds the state to resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row; `last.pt` holds the last good weights."""


@dataclass
class EarlyStopping:
    """Tracks the best validation BLEU; says stop after `patience` validations without a gain (None: never)."""

    patience: int | None = None
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0  # validations since the last BLEU improvement

    def update(self, bleu: float, step: int) -> bool:
        """Record a validation; True when it is the best so far (then best.pt is written)."""
        if bleu > self.best_bleu:
            self.best_bleu, self.best_step, self.bad_validations = bleu, step, 0
            return True
        self.bad_validations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_validations >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "patience"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_bleu, self.best_step = state["best_bleu"], state["best_step"]
        self.bad_validations = state["bad_validations"]


def limit_reached(cfg: TrainConfig, step: int, epoch: int, seconds: float, epoch_done: bool) -> str | None:
    """Which of `train.max_steps`, `train.max_minutes`, `train.max_epochs` (at an epoch's end) is reached, if any."""
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return f"train.max_steps={cfg.max_steps} reached"
    if cfg.max_minutes is not None and seconds >= cfg.max_minutes * 60:
        return f"train.max_minutes={cfg.max_minutes} reached"
    if epoch_done and cfg.max_epochs is not None and epoch >= cfg.max_epochs:
        return f"train.max_epochs={cfg.max_epochs} reached"
    return None


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """While training, SIGINT/SIGTERM only set a flag (`stop["signum"]`); the loop stops at the next step boundary.

    A second signal stops at once (KeyboardInterrupt).
    """
    stop: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop:  # a second signal: stop now
            raise KeyboardInterrupt
        stop["signum"] = signum
        log.warning("%s received: stopping after the current step", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
