"""One logging path for a run: TensorBoard scalars, log lines, validation samples and the insight pictures.

Only rank 0 reports (`enabled=False` on the other ranks makes every call a no-op). On an interactive
terminal a tqdm bar shows progress; otherwise the log gets a plain line every `train.log_every` steps.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from seq2seq.data.corpus import ParallelCorpus
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.results import VALIDATION_KEYS
from seq2seq.training.insight import InsightProbe

log = logging.getLogger("seq2seq.training.trainer")


class Throughput:
    """Target tokens per second, per log window and over the whole run."""

    def __init__(self) -> None:
        self.windows: list[float] = []  # tokens/s of each closed window
        self.tokens, self.loss = 0, 0.0  # of the open window
        self.start = time.monotonic()

    def add(self, tokens: int, loss: float) -> None:
        self.tokens += tokens
        self.loss += loss

    def close_window(self) -> tuple[float, float]:
        """End the window: (mean loss per token, tokens/s) over it; the next window starts now."""
        now = time.monotonic()
        rate = self.tokens / max(now - self.start, 1e-9)
        loss = self.loss / self.tokens
        self.windows.append(rate)
        self.tokens, self.loss, self.start = 0, 0.0, now
        return loss, rate

    def summary(self) -> float | None:
        """The median over windows (the first, with warm-up, left out when there are others); with no closed
        window, the whole run's rate; None when no token was trained on."""
        if self.windows:
            return round(statistics.median(self.windows[1:] or self.windows), 1)
        seconds = time.monotonic() - self.start
        return round(self.tokens / seconds, 1) if self.tokens and seconds > 0 else None


class Reporter:
    """Writes what a run shows: `train/*` and `valid/*` scalars, samples, insight; log lines beside them."""

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        progress: bool = False,
        num_samples: int = 3,
        insight: InsightProbe | None = None,
    ) -> None:
        self.enabled, self.progress, self.num_samples, self.insight = enabled, progress, num_samples, insight
        self.writer: Any = SummaryWriter(log_dir=str(run_dir)) if enabled else None

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.enabled:
            self.writer.add_scalar(tag, value, step)

    def train(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float, ratio: float, rate: float) -> None:
        """A closed log window: `train/*` scalars, and a log line when no progress bar shows."""
        for tag, value in (
            ("train/loss", loss),
            ("train/lr", lr),
            ("train/grad_norm", grad_norm),
            ("train/teacher_forcing_ratio", ratio),
            ("train/tokens_per_sec", rate),
        ):
            self.scalar(tag, value, step)
        if not self.progress:
            log.info(
                "step %d  epoch %d  loss %.4f  lr %.2e  grad_norm %.2f  teacher_forcing_ratio %.2f  %.0f tok/s",
                *(step, epoch, loss, lr, grad_norm, ratio, rate),
            )

    def validation(
        self, step: int, row: dict[str, float], valid: ParallelCorpus, hyps: list[str], model: Seq2Seq
    ) -> None:
        """`valid/*` scalars, the samples table, the insight pictures, and the log lines of one validation."""
        if not self.enabled:
            return
        for key in VALIDATION_KEYS:
            self.writer.add_scalar(f"valid/{key}", row[key], step)
        pairs = [key.partition("/")[2] for key in row if key.startswith("bleu/")]  # a multilingual validation set
        for pair in pairs:
            self.writer.add_scalar(f"valid/bleu/{pair}", row[f"bleu/{pair}"], step)
            self.writer.add_scalar(f"valid/chrf/{pair}", row[f"chrf/{pair}"], step)
        self.writer.add_text("valid/samples", self.samples_markdown(valid, hyps), step)
        if self.insight is not None:
            self.insight.log(self.writer, model, step)
        self.writer.flush()
        log.info(
            "validation at step %d: loss %.4f  perplexity %.2f  BLEU %.2f  chrF %.2f  TER %.2f  "
            "teacher-forced BLEU %.2f (exposure bias gap %.2f)",
            *(step, row["loss"], row["perplexity"], row["bleu"], row["chrf"], row["ter"]),
            *(row["teacher_forced_bleu"], row["exposure_bias_gap"]),
        )
        if pairs:
            log.info("  by language pair: %s", ", ".join(f"{p} BLEU {row[f'bleu/{p}']:.2f}" for p in pairs))
        for i in range(min(self.num_samples, len(hyps))):
            log.info("  source:     %s\n  reference:  %s\n  hypothesis: %s", valid.src[i], valid.tgt[i], hyps[i])

    def samples_markdown(self, valid: ParallelCorpus, hyps: list[str]) -> str:
        rows = ["| source | reference | hypothesis |", "| --- | --- | --- |"]
        for i in range(min(self.num_samples, len(hyps))):
            cells = (text.replace("|", "\\|") for text in (valid.src[i], valid.tgt[i], hyps[i]))
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def flush(self) -> None:
        if self.enabled:
            self.writer.flush()

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
