"""The encoder-decoder, and `build_model`, the one place that reads `ModelConfig`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.model.attention import Attention
from seq2seq.model.decoder import Decoder, DecoderState, Memory, OutputRows, output_rows
from seq2seq.model.encoder import Encoder
from seq2seq.vocab import BOS_ID, PAD_ID


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def has_attention(self) -> bool:
        """Whether the decoder attends over the source (False for `model.attention=none`)."""
        return self.decoder.attention is not None

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Memory, DecoderState]:
        """src: (batch, src_len) -> the decoder's memory and initial state."""
        outputs, summary = self.encoder(src, src_lengths)  # (batch, src_len, enc), (batch, enc)
        return self.memory_from_encoder(outputs, summary, src)

    def memory_from_encoder(self, outputs: Tensor, summary: Tensor, src: Tensor) -> tuple[Memory, DecoderState]:
        """Encoder outputs (batch, src_len, enc) and summary (batch, enc) -> memory and initial state.

        Split from `encode` so that the insight probe can feed the outputs of its unrolled encoder.
        """
        attention = self.decoder.attention
        keys = None if attention is None else attention.project_keys(outputs)
        memory = Memory(values=outputs, keys=keys, mask=src != PAD_ID, context=summary)
        return memory, self.decoder.init_state(memory)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Training forward pass: logits (batch, tgt_len, tgt_vocab)."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(tgt_in, memory, state, teacher_forcing_ratio, generator)

    @property
    def tgt_vocab_size(self) -> int:
        return self.decoder.embedding.num_embeddings

    def output_rows(self, shared: Tensor, own: Tensor, valid: Tensor) -> OutputRows:
        """The output layer cut to a batch's shortlist candidates (`lexicon.Candidates`: shared (N,), own and
        valid (sentences, C)), for `decode_step(..., output=)`."""
        return output_rows(self.decoder.output, shared, own, valid)

    def decode_step(
        self, prev: Tensor, state: DecoderState, memory: Memory, output: nn.Module | None = None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One search step: prev (batch,) -> log-probabilities (batch, vocab), new state, attention weights.

        With `output` (`output_rows(...)`), the log-probabilities are over each sentence's candidate ids
        only: (batch, C), normalized over them (a shortlist never holds PAD or BOS).
        """
        readout, state, weights = self.decoder.step(prev, state, memory)
        log_probs = torch.log_softmax(self.decoder.logits(readout, output).float(), dim=-1)
        if output is None:
            log_probs[:, [PAD_ID, BOS_ID]] = float("-inf")  # never generated
        return log_probs, state, weights


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    encoder = Encoder(
        cfg.cell,
        src_vocab_size,
        cfg.embedding_size,
        cfg.hidden_size,
        cfg.encoder_layers,
        cfg.dropout,
        cfg.bidirectional,
        PAD_ID,
    )
    attention = (
        None
        if cfg.attention == "none"
        else Attention(cfg.attention, query_size=cfg.hidden_size, key_size=encoder.output_size)
    )
    decoder = Decoder(
        cfg.cell,
        tgt_vocab_size,
        cfg.embedding_size,
        cfg.hidden_size,
        cfg.decoder_layers,
        cfg.dropout,
        attention,
        encoder_size=encoder.output_size,
        readout_size=cfg.readout_size or cfg.embedding_size,
        input_feeding=cfg.input_feeding,
        tie_embeddings=cfg.tie_embeddings,
        pad_id=PAD_ID,
    )
    return Seq2Seq(encoder, decoder)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# train.freeze's parts (config.FREEZE_PARTS): the parameters whose names start with these prefixes
FREEZABLE: dict[str, tuple[str, ...]] = {
    "embeddings": ("encoder.embedding.", "decoder.embedding."),
    "encoder": ("encoder.",),
    "decoder": ("decoder.",),
    "attention": ("decoder.attention.",),
    "output": ("decoder.readout.", "decoder.output."),
}


def freeze(model: nn.Module, parts: Sequence[str]) -> int:
    """Keep `parts` (names of FREEZABLE) fixed: their parameters get no gradient and no update. Returns how many
    parameter values are frozen. A tied output layer is the target embedding: freezing either freezes both."""
    prefixes = tuple(prefix for part in parts for prefix in FREEZABLE[part])
    named = model.named_parameters(remove_duplicate=False)  # a tied weight under each of its names
    chosen = {id(param) for name, param in named if name.startswith(prefixes)}
    frozen = 0
    for param in model.parameters():  # each tensor once
        if id(param) in chosen:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
