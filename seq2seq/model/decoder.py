"""The decoder: one step function, used alike by training, greedy search and beam search.

Each step reads the previous target token and produces a distribution over the next:

    e_t  = embed(y_{t-1})
    s_t  = cell([e_t; extra_t], s_{t-1})          extra: input feeding or the fixed context
    c_t  = attention(s_t, encoder outputs)        or, without attention, the fixed context c
    r_t  = tanh(W_r [s_t; c_t; e_t])              the readout (pre-output) layer
    p_t  = softmax(W_o r_t)

Without attention (`attention=none`) the decoder sees the source only through c,
the encoder's final state: it initialises s_0 (through the bridge) and is fed at
every step (Cho et al., 2014). With attention, c_t is recomputed at every step
from all encoder outputs, and with input feeding r_{t-1} joins the next input
(Luong et al., 2015), so the decoder knows what it attended to before.

Input feeding is also what forces training to step: without it (`input_feeding=false`,
or no attention) s_t depends only on the tokens y_<t, so under full teacher forcing
`forward` runs the RNN over the whole target in one fused kernel and then attention,
readout and output projection for all steps at once: the same numbers, far fewer ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from seq2seq.model.cells import CellState, StackedCell, tanh_
from seq2seq.model.dropout import Dropout
from seq2seq.model.precision import Linear, LowPrecisionMatmul, uses_low_precision

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.model.attention import Attention


@dataclass
class Memory:
    """What the decoder reads from the encoder, fixed for the whole output sentence."""

    values: Tensor  # (batch, src_len, encoder_size) encoder outputs
    keys: Tensor | None  # (batch, src_len, *) projected once per batch (attention only)
    mask: Tensor  # (batch, src_len) True at real source tokens
    context: Tensor  # (batch, encoder_size) the encoder's final state: the fixed context vector

    def index_select(self, index: Tensor) -> Memory:
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return Memory(
            self.values.index_select(0, index),
            keys,
            self.mask.index_select(0, index),
            self.context.index_select(0, index),
        )

    def cat(self, other: Memory) -> Memory:
        """This memory's sentences, then `other`'s, padded to the longer source (the padding is masked)."""
        src_len = max(self.mask.size(1), other.mask.size(1))

        def join(a: Tensor, b: Tensor) -> Tensor:  # (batch, src_len, ...) tensors, padded with zeros
            return torch.cat([_pad_source(a, src_len), _pad_source(b, src_len)])

        keys = None if self.keys is None or other.keys is None else join(self.keys, other.keys)
        return Memory(
            join(self.values, other.values), keys, join(self.mask, other.mask), torch.cat([self.context, other.context])
        )


def _pad_source(x: Tensor, src_len: int) -> Tensor:
    """x (batch, len, ...) padded with zeros (False) to (batch, src_len, ...)."""
    if x.size(1) == src_len:
        return x
    padding = x.new_zeros(x.size(0), src_len - x.size(1), *x.shape[2:])
    return torch.cat([x, padding], dim=1)


@dataclass
class DecoderState:
    rnn: CellState
    feed: Tensor | None  # (batch, readout) the previous attentional vector, with input feeding

    def index_select(self, index: Tensor) -> DecoderState:
        return DecoderState(
            self.rnn.index_select(index), None if self.feed is None else self.feed.index_select(0, index)
        )

    def cat(self, other: DecoderState) -> DecoderState:
        """This state's rows, then `other`'s."""
        feed = None if self.feed is None or other.feed is None else torch.cat([self.feed, other.feed])
        return DecoderState(self.rnn.cat(other.rnn), feed)


class OutputRows(nn.Module):
    """An output layer cut to a batch's candidate target ids (a shortlist: `output_rows`), made once per batch.

    Scores come in two parts: over the ids every sentence has (`shared`: the frequent ones; one matrix
    product for all rows), then over each sentence's own (one batched product, its rows against its own
    weights). The rows that decode a sentence (greedy: one; beam search: its beams) are contiguous and
    equally many. When sentences are done (`sentences`), their own weights stay until at most half of them
    are live, and only then are the live ones copied out: a copy per finished sentence would cost more
    than the products it saves.
    """

    def __init__(self, shared: nn.Module, weight: Tensor, bias: Tensor, live: Tensor | None = None) -> None:
        super().__init__()
        self.shared = shared  # readout -> scores over the shared ids (an nn.Linear, or int8's)
        self.weight = weight  # (sentences, readout, C): every sentence's own rows of the layer, transposed
        self.bias = bias  # (sentences, C): the layer's bias there, -inf where a sentence's own ids are padding
        self.live = live  # (live sentences,) their places in weight and bias; None: all, in order

    def forward(self, x: Tensor) -> Tensor:
        """x (rows, readout), the live sentences' rows in order -> scores (rows, N + C)."""
        common = self.shared(x)  # (rows, N)
        if self.weight.size(2) == 0:
            return common
        sentences = self.weight.size(0) if self.live is None else self.live.numel()
        grouped = x.view(sentences, x.size(0) // sentences, x.size(1))  # (live sentences, rows each, readout)
        if self.live is not None:  # done sentences' places stay in the product, fed zeros
            grouped = grouped.new_zeros(self.weight.size(0), *grouped.shape[1:]).index_copy_(0, self.live, grouped)
        own = torch.baddbmm(self.bias.unsqueeze(1), grouped, self.weight)  # (sentences, rows each, C)
        if self.live is not None:
            own = own.index_select(0, self.live)
        return torch.cat([common, own.reshape(x.size(0), -1)], dim=1)

    def sentences(self, kept: Tensor) -> OutputRows:
        """The layer for the live sentences `kept` (indices among the live ones, in order) only."""
        live = kept if self.live is None else self.live.index_select(0, kept)
        if 2 * live.numel() > self.weight.size(0):
            return OutputRows(self.shared, self.weight, self.bias, live)
        return OutputRows(self.shared, self.weight.index_select(0, live), self.bias.index_select(0, live))


def output_rows(layer: nn.Module, shared: Tensor, own: Tensor, valid: Tensor) -> OutputRows:
    """The output layer `layer` (an `nn.Linear`, or int8's `Int8Linear`) cut to a batch's candidates: the
    ids every sentence has, shared (N,), and each sentence's own, (sentences, C), `valid` False at padding.
    The shared part keeps the layer's kind (int8 stays int8); the sentences' own parts are fp32."""
    quantized = hasattr(layer, "weight_fp32")  # an Int8Linear, which is built from (weight, bias) too
    weight = layer.weight_fp32 if quantized else layer.weight.detach()  # (vocab, readout)
    bias = layer.bias_fp32 if quantized else layer.bias
    bias = None if bias is None else bias.detach()
    common = (type(layer) if quantized else GivenLinear)(weight[shared], None if bias is None else bias[shared])
    rows = weight[own].transpose(1, 2).contiguous().float()  # (sentences, readout, C)
    shift = torch.zeros(own.shape, device=own.device) if bias is None else bias[own].float()
    return OutputRows(common, rows, shift.masked_fill(~valid, float("-inf")))


class GivenLinear(nn.Module):
    """y = x W^T + b with given tensors (not parameters): an output layer's rows, cut for a shortlist."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class OutputLayer(Linear):
    """The output projection, readout (..., readout_size) -> scores (..., vocab), without a bias.

    The largest cost per target token in training: three (tokens x readout x vocab) products a step. With
    `matmul_dtype` bf16 (`seq2seq.model.precision`) the training scores come out in bf16, as under autocast, and
    the cross-entropy's gradient stays bf16 for the two backward products.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if not uses_low_precision(self, x):
            return nn.functional.linear(x, self.weight)
        return LowPrecisionMatmul.apply(x, self.weight, self.matmul_dtype)


class Decoder(nn.Module):
    def __init__(
        self,
        cell: str,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        attention: Attention | None,
        encoder_size: int,
        readout_size: int,
        input_feeding: bool,
        tie_embeddings: bool,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.cell_kind = cell
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.attention = attention
        self.input_feeding = input_feeding and attention is not None
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_id)
        self.dropout = Dropout(dropout)
        extra = encoder_size if attention is None else (readout_size if self.input_feeding else 0)
        self.rnn = StackedCell(cell, embedding_size + extra, hidden_size, num_layers, dropout)
        # bridge: the encoder's final state -> every layer's initial h (and c for the LSTM)
        states_per_layer = 2 if cell == "lstm" else 1
        self.bridge = Linear(encoder_size, num_layers * states_per_layer * hidden_size)
        self.readout = Linear(hidden_size + encoder_size + embedding_size, readout_size)
        self.output = OutputLayer(readout_size, vocab_size)
        if tie_embeddings:
            if readout_size != embedding_size:
                raise ValueError("tied embeddings need readout_size == embedding_size")
            self.output.weight = self.embedding.weight

    def init_state(self, memory: Memory) -> DecoderState:
        """s_0 = tanh(W_b c): the bridge from the encoder's summary to the decoder's first state."""
        batch = memory.context.size(0)
        init = torch.tanh(self.bridge(memory.context))  # (batch, layers * states * hidden)
        parts = init.view(batch, -1, self.hidden_size).unbind(1)  # layers * states tensors of (batch, hidden)
        hidden = parts[: self.num_layers]
        cells = parts[self.num_layers :] if self.cell_kind == "lstm" else None
        feed = memory.context.new_zeros(batch, self.readout.out_features) if self.input_feeding else None
        return DecoderState(CellState(tuple(hidden), None if cells is None else tuple(cells)), feed)

    def step(
        self, prev: Tensor, state: DecoderState, memory: Memory, embedded: Tensor | None = None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """prev: (batch,) previous tokens -> readout (batch, readout_size), new state, attention (batch, src_len).

        The memory holds one row per sentence; `state` and `prev` may hold several rows per sentence (a beam's
        hypotheses), contiguous and equally many, which then attend to their sentence's row without copies.

        `embedded` (batch, embedding): prev's embedding after dropout, when the caller looked up a whole target
        at once (teacher forcing: one lookup and one embedding gradient instead of one per step).
        """
        rows, sentences = prev.size(0), memory.context.size(0)
        group = rows // sentences  # rows per memory row: 1, or in beam search a sentence's hypotheses
        if embedded is None:
            embedded = self.dropout(self.embedding(prev))  # (batch, embedding)
        if self.attention is None:  # the fixed context, each sentence's once per row: (batch, encoder)
            fixed = memory.context if group == 1 else memory.context.repeat_interleave(group, dim=0)
            rnn_input = torch.cat([embedded, fixed], dim=1)
        elif self.input_feeding:
            rnn_input = torch.cat([embedded, state.feed], dim=1)
        else:
            rnn_input = embedded
        output, rnn_state = self.rnn(rnn_input, state.rnn)  # (batch, hidden)
        if self.attention is None:
            context, weights = fixed, None
        else:  # each memory row's `group` queries at once: (sentences, group, hidden)
            query = output.view(sentences, group, -1)
            context, weights = self.attention(query, memory.keys, memory.values, memory.mask)
            context, weights = context.reshape(rows, -1), weights.reshape(rows, -1)  # (batch, enc), (batch, src_len)
        readout = self.readout(torch.cat([output, context, embedded], dim=1))  # (batch, readout)
        readout = torch.tanh(readout) if readout.requires_grad else tanh_(readout)  # in place in search
        return readout, DecoderState(rnn_state, readout if self.input_feeding else None), weights

    def all_steps(self, tgt_in: Tensor, state: DecoderState, memory: Memory) -> Tensor:
        """`step` over every position of tgt_in (batch, tgt_len) at once -> readouts (batch, tgt_len, readout).

        Only without input feeding, where the RNN's inputs are known in advance: one fused RNN call, then
        attention, readout and the output projection over all steps (the Luong order makes this exact).
        """
        assert not self.input_feeding, "with input feeding each step needs the previous readout"
        embedded = self.dropout(self.embedding(tgt_in))  # (batch, tgt_len, embedding)
        steps = tgt_in.size(1)
        if self.attention is None:
            context = memory.context.unsqueeze(1).expand(-1, steps, -1)  # (batch, tgt_len, encoder)
            output = self.rnn.sequence(torch.cat([embedded, context], dim=2), state.rnn)  # (batch, tgt_len, hidden)
        else:
            output = self.rnn.sequence(embedded, state.rnn)
            context, _ = self.attention(output, memory.keys, memory.values, memory.mask)  # (batch, tgt_len, encoder)
        return torch.tanh(self.readout(torch.cat([output, context, embedded], dim=2)))  # (batch, tgt_len, readout)

    def logits(self, readout: Tensor, output: nn.Module | None = None) -> Tensor:
        """readout (..., readout_size) -> unnormalised scores over the target vocabulary (..., vocab).

        `output`: the output layer restricted to some target ids (`output_rows`, a shortlist), whose
        scores (..., ids) come instead.
        """
        return (self.output if output is None else output)(self.dropout(readout))

    def forward(
        self,
        tgt_in: Tensor,
        memory: Memory,
        state: DecoderState,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
        step_by_step: bool = False,
    ) -> Tensor:
        """Run over a whole target sentence; returns logits (batch, tgt_len, vocab).

        tgt_in: (batch, tgt_len), BOS y1 .. y_{n}. At each step after the first, the
        decoder is fed the gold previous token with probability `teacher_forcing_ratio`
        (one draw per step, for the whole batch); otherwise its own previous prediction,
        as at inference. Ratio 1 is plain teacher forcing: fast, but the model never
        learns to recover from its own mistakes (exposure bias). Without input feeding, ratio 1
        runs `all_steps` (one fused RNN call) unless `step_by_step` (the insight probe hooks each step).
        """
        steps = tgt_in.size(1)
        if teacher_forcing_ratio >= 1.0 and not self.input_feeding and not step_by_step:
            return self.logits(self.all_steps(tgt_in, state, memory))  # no step loop at all
        if teacher_forcing_ratio >= 1.0:
            readouts = []
            embedded = self.dropout(self.embedding(tgt_in)).unbind(1)  # tgt_len x (batch, embedding)
            for t in range(steps):
                readout, state, _ = self.step(tgt_in[:, t], state, memory, embedded[t])
                readouts.append(readout)
            return self.logits(torch.stack(readouts, dim=1))  # one big projection for all steps
        use_gold = torch.rand(steps, generator=generator) < teacher_forcing_ratio  # (tgt_len,) on the CPU
        logits = []
        prev = tgt_in[:, 0]
        for t in range(steps):
            if t > 0:
                prev = tgt_in[:, t] if use_gold[t] else logits[-1].argmax(dim=1).detach()
            readout, state, _ = self.step(prev, state, memory)
            logits.append(self.logits(readout))
        return torch.stack(logits, dim=1)
