"""The model explains itself: attention, gates and vanishing gradients, in TensorBoard.

At every validation (`train.insight=true`) `InsightProbe` looks at the same few validation
sentences, so that its pictures compare over training:

- **attention heatmaps**: each sentence decoded greedily (free running, as at inference), with the
  attention weights of every output piece over the source pieces;
- **gate statistics**: the mean activation of every gate (GRU: update, reset; LSTM: input, forget,
  output) and the share of saturated values (below 0.05 or above 0.95), per encoder layer and
  direction and per decoder layer; for the tanh RNN, the share of hidden units beyond ±0.95;
- **the gradient by distance**: the norm of d(loss)/d(h_t) for the top encoder layer's forward state,
  against the distance of t from the end of the source. A tanh RNN without attention shows the
  gradient vanishing as the distance grows; gates and attention keep it alive.

The encoder runs PyTorch's fused kernels, which hide the gates and the per-step states, so the
probe re-runs it step by step (`unroll_encoder`) with `cells.cell_equations` and the fused weights.
Its outputs equal the fused ones, and its step states carry the *total* derivative, back through
the recurrence. The probe runs in eval mode (no dropout, no random draws) and takes gradients with
`torch.autograd.grad`, so training never notices it: weights, `.grad`, mode and RNG stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from seq2seq.config import DecodeConfig
from seq2seq.data.batches import Batch, make_batch
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.model_search import translate_batch
from seq2seq.model.cells import SEQUENCE_KINDS, cell_equations, direction_weights
from seq2seq.model.encoder import Encoder
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.loss import sequence_loss
from seq2seq.vocab import EOS_ID, PAD_ID

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

SATURATION = 0.05  # a sigmoid gate below 0.05 or above 0.95, a tanh unit beyond ±0.95, counts as saturated


# ------------------------------------------------------------------ unrolled encoder
@dataclass
class EncoderTrace:
    """The encoder, step by step. Parts are `encoder_l{layer}_forward` / `encoder_l{layer}_backward`."""

    outputs: Tensor  # (batch, src_len, directions * hidden), zero at padding: what `Encoder.forward` returns
    summary: Tensor  # (batch, directions * hidden) the top layer's final states, both directions
    states: dict[str, list[Tensor]]  # part -> src_len tensors (batch, hidden): the state each step produced
    gates: dict[str, dict[str, Tensor]]  # part -> gate -> (batch, src_len, hidden) activations
    mask: Tensor  # (batch, src_len) True at real source tokens


def unroll_encoder(encoder: Encoder, src: Tensor, src_lengths: Tensor) -> EncoderTrace:
    """Run `encoder` one time step at a time with `cell_equations` and the fused RNN's own weights.

    src: (batch, src_len) ids; src_lengths: (batch,). Eval-mode semantics: no dropout. At a padding
    position the state stays as it was and the output is zero, so the forward direction ends at each
    sentence's last token and the backward direction starts there, exactly as packing makes the
    fused kernel do.
    """
    rnn = encoder.rnn
    kind = SEQUENCE_KINDS[rnn.mode]
    src_len = src.size(1)
    positions = torch.arange(src_len, device=src.device)
    mask = positions.unsqueeze(0) < src_lengths.to(src.device).unsqueeze(1)  # (batch, src_len)
    x = encoder.embedding(src)  # (batch, src_len, embedding)
    states: dict[str, list[Tensor]] = {}
    gates: dict[str, dict[str, Tensor]] = {}
    for layer in range(rnn.num_layers):
        outputs, finals = [], []
        for direction in range(encoder.num_directions):
            weights = direction_weights(rnn, layer, direction)
            out, final, step_states, step_gates = _unroll_direction(kind, x, mask, weights, reverse=direction == 1)
            part = f"encoder_l{layer}_{'backward' if direction else 'forward'}"
            states[part], gates[part] = step_states, step_gates
            outputs.append(out)
            finals.append(final)
        x = torch.cat(outputs, dim=2)  # (batch, src_len, directions * hidden): the next layer's input
    return EncoderTrace(outputs=x, summary=torch.cat(finals, dim=1), states=states, gates=gates, mask=mask)


def _unroll_direction(
    kind: str, x: Tensor, mask: Tensor, weights: list[Tensor], reverse: bool
) -> tuple[Tensor, Tensor, list[Tensor], dict[str, Tensor]]:
    """One layer, one direction: x (batch, src_len, input) -> outputs (batch, src_len, hidden), final h,
    the per-step states, and the gates stacked over time (batch, src_len, hidden)."""
    batch, src_len, _ = x.shape
    hidden = weights[1].size(1)  # w_hh: (gates * hidden, hidden)
    h = x.new_zeros(batch, hidden)
    c = x.new_zeros(batch, hidden) if kind == "lstm" else None
    step_states: list[Tensor] = [h] * src_len
    step_gates: list[dict[str, Tensor]] = [{}] * src_len
    for t in reversed(range(src_len)) if reverse else range(src_len):
        real = mask[:, t].unsqueeze(1)  # (batch, 1)
        h_new, c_new, step_gates[t] = cell_equations(kind, x[:, t], h, c, *weights)
        step_states[t] = h_new
        h = torch.where(real, h_new, h)  # padding leaves the state as it was
        if c is not None and c_new is not None:
            c = torch.where(real, c_new, c)
    outputs = torch.stack(step_states, dim=1).masked_fill(~mask.unsqueeze(2), 0.0)  # (batch, src_len, hidden)
    gates = {name: torch.stack([g[name] for g in step_gates], dim=1) for name in step_gates[0]}
    return outputs, h, step_states, gates


# ------------------------------------------------------------ gates and gradients
@dataclass
class BatchTrace:
    """One teacher-forced pass over a batch with the unrolled encoder."""

    gates: dict[str, dict[str, Tensor]]  # part -> gate -> (real positions, hidden) activations, detached
    grad_norms: Tensor  # (batch, src_len) ||d loss / d h_t|| of the top encoder layer's forward state
    src_lengths: Tensor  # (batch,) true source lengths, EOS included
    loss: float  # the summed cross-entropy the gradients are of


@contextmanager
def probing(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, so no random draws) and every parameter differentiable (a frozen part, `train.freeze`,
    still passes gradients through to the states the probe measures) for the duration; as before afterwards."""
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def trace_batch(model: Seq2Seq, batch: Batch) -> BatchTrace:
    """Gates of every encoder and decoder layer, and d(loss)/d(h_t) of the encoder's forward states.

    The memory is built from the unrolled encoder's outputs and the decoder runs teacher-forced; the
    loss is the cross-entropy summed over the batch. `torch.autograd.grad` leaves `.grad` untouched.
    Decoder parts are named `decoder_l{layer}`. Only real (non-pad) positions are kept.
    """
    assert batch.tgt_in is not None and batch.tgt_out is not None, "the trace needs targets"
    layers = list(model.decoder.rnn.layers)
    captured: list[list[tuple[Tensor, ...]]] = [[] for _ in layers]  # per layer, per step: (x, h[, c])

    def capture(i: int):  # the step's input and previous state, as the cell saw them
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            x, state = args
            captured[i].append((x.detach(), *(s.detach() for s in (state if isinstance(state, tuple) else (state,)))))

        return hook

    with probing(model), torch.enable_grad():
        enc = unroll_encoder(model.encoder, batch.src, batch.src_lengths)
        memory, state = model.memory_from_encoder(enc.outputs, enc.summary, batch.src)
        handles = [layer.register_forward_hook(capture(i)) for i, layer in enumerate(layers)]
        try:
            # (batch, tgt_len, vocab), teacher forcing, one cell call per step (the hooks read each step)
            logits = model.decoder(batch.tgt_in, memory, state, step_by_step=True)
        finally:
            for handle in handles:
                handle.remove()
        loss = sequence_loss(logits, batch.tgt_out)
        top = enc.states[f"encoder_l{model.encoder.num_layers - 1}_forward"]  # src_len x (batch, hidden)
        grads = torch.autograd.grad(loss, top, allow_unused=True) if loss.requires_grad else [None] * len(top)
    grad_norms = torch.stack(
        [h.new_zeros(h.size(0)) if g is None else g.norm(dim=1) for g, h in zip(grads, top)], dim=1
    ).masked_fill(~enc.mask, 0.0)  # (batch, src_len)

    gates = {
        part: {name: g.detach()[enc.mask] for name, g in part_gates.items()} for part, part_gates in enc.gates.items()
    }
    tgt_mask = batch.tgt_out != PAD_ID  # (batch, tgt_len): the steps that predict a real token
    kind = model.decoder.cell_kind
    with torch.no_grad():
        for i, layer in enumerate(layers):
            steps = []
            for x, h, *c in captured[i]:
                weights = (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
                steps.append(cell_equations(kind, x, h, c[0] if c else None, *weights)[2])
            gates[f"decoder_l{i}"] = {
                name: torch.stack([s[name] for s in steps], dim=1)[tgt_mask] for name in steps[0]
            }  # (real target positions, hidden)
    return BatchTrace(gates, grad_norms.detach(), batch.src_lengths.cpu(), float(loss.detach()))


def norms_by_distance(grad_norms: Tensor, src_lengths: Tensor) -> list[float]:
    """(batch, src_len) norms by position -> the mean over sentences by distance from the end.

    Position t of a sentence of length n is at distance n - 1 - t (0: its last token, EOS); each
    distance averages the sentences long enough to have it.
    """
    longest = int(src_lengths.max())
    totals, counts = [0.0] * longest, [0] * longest
    for row, length in zip(grad_norms.tolist(), src_lengths.tolist()):
        for t in range(length):
            totals[length - 1 - t] += row[t]
            counts[length - 1 - t] += 1
    return [total / count for total, count in zip(totals, counts)]


def gradient_by_distance(model: Seq2Seq, batch: Batch) -> list[float]:
    """Mean ||d loss / d h_t|| (top encoder layer, forward direction) at distance 0, 1, ... from the source end."""
    trace = trace_batch(model, batch)
    return norms_by_distance(trace.grad_norms, trace.src_lengths)


def gate_statistics(gates: dict[str, dict[str, Tensor]]) -> dict[str, float]:
    """`gates/{part}/{gate}_mean` and `gates/{part}/{gate}_saturated` for every part and gate.

    Sigmoid gates: saturated below 0.05 or above 0.95. The tanh RNN's `hidden` units: the mean is
    that of |h| (the mean of h itself sits near 0 whatever happens) and saturated means |h| > 0.95.
    """
    stats = {}
    for part, part_gates in gates.items():
        for name, values in part_gates.items():
            values = values.float()
            if name == "hidden":
                mean = values.abs().mean()
                saturated = values.abs() > 1 - SATURATION
            else:
                mean = values.mean()
                saturated = (values < SATURATION) | (values > 1 - SATURATION)
            stats[f"gates/{part}/{name}_mean"] = float(mean)
            stats[f"gates/{part}/{name}_saturated"] = float(saturated.float().mean())
    return stats


# ------------------------------------------------------------------- attention
@torch.no_grad()
def greedy_attention(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, decode: DecodeConfig | None = None
) -> list[tuple[list[int], Tensor]]:
    """Greedy decoding (free running, as at inference) that keeps the attention weights.

    Returns per sentence the output ids (EOS included when produced) and the weights
    (output length, source length), on the CPU. It is `model_search.translate_batch` with
    `keep_attention`, so the lengths and the EOS rule are those of validation and translate.
    """
    if model.decoder.attention is None:
        raise ValueError("the model has no attention (model.attention=none)")
    greedy = replace(decode or DecodeConfig(), beam_size=1, nbest=1, sampling=False)
    batch = Batch(src, src_lengths, None, None, list(range(src.size(0))))
    results = []
    for (hyp,) in translate_batch(model, batch, greedy, keep_attention=True):
        weights = hyp.attention
        assert weights is not None
        ids = hyp.tokens + [EOS_ID] if weights.size(0) > len(hyp.tokens) else hyp.tokens
        results.append((ids, weights))
    return results


# --------------------------------------------------------------------- figures
def attention_figure(weights: Tensor, src_pieces: list[str], tgt_pieces: list[str], title: str = "") -> Figure:
    """A heatmap of weights (output pieces, source pieces): rows are outputs, columns sources."""
    rows, cols = weights.shape
    fig = Figure(figsize=(min(2.5 + 0.3 * cols, 16), min(1.5 + 0.3 * rows, 16)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(cols), labels=src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), labels=tgt_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return fig


def gradient_figure(curves: dict[str, list[float]], title: str = "") -> Figure:
    """Gradient norm (log scale) against distance from the end of the source; one line per label."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for label, norms in curves.items():
        ax.plot(range(len(norms)), norms, marker="o", markersize=3, label=label or None)
    ax.set_yscale("log")
    ax.set_xlabel("distance from the end of the source (tokens)")
    ax.set_ylabel("‖∂loss/∂h_t‖, top encoder layer, forward")
    ax.grid(True, which="both", alpha=0.3)
    if any(curves):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def gate_figure(stats: dict[str, float], title: str = "") -> Figure:
    """Bars of each gate's mean and saturated share, from `gate_statistics`."""
    names = [tag.removeprefix("gates/").removesuffix("_mean") for tag in stats if tag.endswith("_mean")]
    means = [stats[f"gates/{name}_mean"] for name in names]
    saturated = [stats[f"gates/{name}_saturated"] for name in names]
    fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 1.5), 4.0), layout="constrained")
    ax = fig.add_subplot()
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], means, width=0.4, label="mean (tanh: mean |h|)")
    ax.bar([p + 0.2 for p in positions], saturated, width=0.4, label="saturated share")
    ax.set_xticks(positions, labels=[name.replace("/", "\n") for name in names], rotation=90, fontsize=7)
    ax.set_ylim(0.0, 1.0)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# ----------------------------------------------------------------------- probe
class InsightProbe:
    """Logs attention heatmaps, gate statistics and the gradient by distance for fixed sentences."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        src_ids: list[list[int]],
        tgt_ids: list[list[int]],
        device: torch.device,
        decode: DecodeConfig | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.decode = decode or DecodeConfig()  # its length limits; the search is always greedy
        self.batch = make_batch(src_ids, tgt_ids).to(device)  # sources + EOS, BOS + targets, targets + EOS
        self.src_pieces = [[tokenizer.src.id_to_piece(int(i)) for i in ids] + ["</s>"] for ids in src_ids]

    def attention_figures(self, model: Seq2Seq) -> list[Figure]:
        """One heatmap per fixed sentence, from free-running greedy decoding."""
        decoded = greedy_attention(model, self.batch.src, self.batch.src_lengths, self.decode)
        return [
            attention_figure(weights, pieces, self.tokenizer.tgt_pieces(ids))
            for (ids, weights), pieces in zip(decoded, self.src_pieces)
        ]

    def log(self, writer: SummaryWriter, model: Seq2Seq, step: int) -> dict[str, float]:
        """Write everything for training step `step`; returns the scalars it logged."""
        with probing(model):
            if model.decoder.attention is not None:
                for i, fig in enumerate(self.attention_figures(model)):
                    writer.add_figure(f"attention/sentence_{i}", fig, step)  # renders and closes it
            trace = trace_batch(model, self.batch)
        scalars = gate_statistics(trace.gates)
        for part, part_gates in trace.gates.items():
            for name, values in part_gates.items():
                writer.add_histogram(f"gates/{part}/{name}", values.float().cpu(), step)
        norms = norms_by_distance(trace.grad_norms, trace.src_lengths)
        writer.add_figure("gradients/by_distance_from_end", gradient_figure({"": norms}), step)
        scalars["gradients/norm_at_end"] = norms[0]
        scalars["gradients/norm_ratio_far_to_end"] = norms[-1] / norms[0] if norms[0] > 0 else math.nan
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        return scalars
