"""Placeholder: the insight probe is being written (attention heatmaps, gate statistics, gradient by distance)."""

from __future__ import annotations

from typing import Any

import torch

from seq2seq.config import ModelConfig
from seq2seq.tokenizer import Tokenizer


class InsightProbe:
    def __init__(
        self,
        model_config: ModelConfig,
        tokenizer: Tokenizer,
        src_ids: list[list[int]],
        tgt_ids: list[list[int]],
        device: torch.device,
    ) -> None:
        self.model_config = model_config

    def log(self, writer: Any, model: Any, step: int) -> dict[str, float]:
        return {}
