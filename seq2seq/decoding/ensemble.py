"""Ensembles: several models decode as one, averaging their log-probabilities at every step.

An `Ensemble` offers the two calls search needs from a `Seq2Seq`, `encode` and `decode_step`, so greedy
search, beam search, n-best lists and forced decoding (`seq2seq.decoding.search`) run it unchanged. Each step
feeds every member the same previous token and returns the mean of the members' log-probabilities,

    log p_ens(y | ...) = 1/M * sum_m log p_m(y | ...)

(the log of their geometric mean, not renormalized; the members' own distributions are). Its attention
weights are the mean of the members' weights, when every member has attention.

`seq2seq.decoding.loading.load_models` reads one or more checkpoints: one gives the plain `Seq2Seq`
(single-model decoding is unchanged), several an `Ensemble`, after checking that they share both
SentencePiece models (`check_same_vocabularies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from seq2seq.checkpoint import CheckpointError
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.model.decoder import DecoderState, Memory, OutputRows
from seq2seq.model.seq2seq import Seq2Seq

T = TypeVar("T", Memory, DecoderState)


@dataclass
class PerMember(Generic[T]):
    """One value per ensemble member (its encoder memory or its decoder state), selected row-wise together."""

    values: list[T]

    def index_select(self, rows: Tensor) -> PerMember[T]:
        return PerMember([value.index_select(rows) for value in self.values])

    def cat(self, other: PerMember[T]) -> PerMember[T]:
        return PerMember([mine.cat(theirs) for mine, theirs in zip(self.values, other.values)])  # type: ignore[arg-type]


class Ensemble(nn.Module):
    """Models that share the source and target vocabularies, decoding as one."""

    def __init__(self, members: Sequence[Seq2Seq]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
        self.members = nn.ModuleList(members)

    @property
    def has_attention(self) -> bool:
        """Whether every member attends (then the ensemble's attention is their mean)."""
        return all(member.has_attention for member in self.members)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[PerMember[Memory], PerMember[DecoderState]]:
        """src: (batch, src_len) -> every member's memory and initial decoder state."""
        encoded = [member.encode(src, src_lengths) for member in self.members]
        return PerMember([memory for memory, _ in encoded]), PerMember([state for _, state in encoded])

    @property
    def tgt_vocab_size(self) -> int:
        return self.members[0].tgt_vocab_size

    def output_rows(self, shared: Tensor, own: Tensor, valid: Tensor) -> list[OutputRows]:
        """Every member's output layer cut to a batch's shortlist candidates (as `Seq2Seq.output_rows`)."""
        return [member.output_rows(shared, own, valid) for member in self.members]

    def decode_step(
        self,
        prev: Tensor,
        state: PerMember[DecoderState],
        memory: PerMember[Memory],
        output: list[OutputRows] | None = None,
    ) -> tuple[Tensor, PerMember[DecoderState], Tensor | None]:
        """prev (batch,) -> mean log-probabilities (batch, vocab), new states, mean attention (batch, src_len).

        With `output` (`output_rows(...)`), over each sentence's candidates, as in `Seq2Seq.decode_step`.
        """
        outputs = output if output is not None else [None] * len(self.members)
        steps = [
            member.decode_step(prev, member_state, member_memory, member_output)
            for member, member_state, member_memory, member_output in zip(
                self.members, state.values, memory.values, outputs
            )
        ]
        log_probs = torch.stack([log_p for log_p, _, _ in steps]).mean(dim=0)  # (members, batch, vocab) -> mean
        weights = [w for _, _, w in steps]
        attention = None
        if all(w is not None for w in weights):
            attention = torch.stack([w.float() for w in weights]).mean(dim=0)  # type: ignore[union-attr]
        return log_probs, PerMember([new_state for _, new_state, _ in steps]), attention


DecodingModel = Seq2Seq | Ensemble  # what search, inference, translate and score decode with


def check_same_vocabularies(first: Any, tokenizer: Tokenizer, other: Any, other_tokenizer: Tokenizer) -> None:
    """Raise `CheckpointError` naming both checkpoints unless their SentencePiece models are byte-identical."""
    differ = [
        side
        for side, mine, theirs in zip(("source", "target"), _model_bytes(tokenizer), _model_bytes(other_tokenizer))
        if mine != theirs
    ]
    if differ:
        raise CheckpointError(
            f"cannot ensemble {first} and {other}: their {' and '.join(differ)} SentencePiece models differ "
            "(an ensemble needs the same source and target vocabularies)"
        )


def _model_bytes(tokenizer: Tokenizer) -> tuple[bytes | None, bytes | None]:
    """The serialized (source, target) SentencePiece models; a joint tokenizer's one model is both."""
    state = tokenizer.to_dict()
    return state["src"], state["tgt"] if state["tgt"] is not None else state["src"]
