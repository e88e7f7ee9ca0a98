"""A trained model as ONNX graphs: the encoder, and the decoder's step, for a runtime without PyTorch.

The encoder is built node by node (`encoder_graph`) on ONNX's own recurrent operators (GRU, LSTM, RNN), whose
`sequence_lens` input starts each sentence's backward direction at its last real token, as the encoder does:
tracing PyTorch's loop over time steps would fix the source length of the example. The weights are
reordered to ONNX's gate order (GRU: z r h, PyTorch r z n, with `linear_before_reset`; LSTM: i o f c,
PyTorch i f g o). It returns what `Seq2Seq.encode` does: the outputs (zero at padding), the source mask,
the summary vector, the attention keys (with attention) and the decoder's first state (the bridge).

The decoder step (`export_decoder_step`) has no loop over time, so `torch.onnx.export` traces it with the
rows, the sentences and the source length dynamic. It takes every input as a tensor; the memory holds one row
per sentence, and the decoder rows of a sentence (greedy: one; beam search: its hypotheses) are contiguous and
equally many, as in `Decoder.step`:

    prev (rows,) int64, state (layers * states, rows, hidden), feed (rows, readout),
    values (sentences, src_len, encoder), keys (sentences, src_len, *), mask (sentences, src_len) bool,
    context (sentences, encoder) -> log_probs (rows, vocab), state_out, feed_out, attention (rows, src_len)

`states` is 2 for the LSTM (h of every layer, then c of every layer), else 1; `feed` is the input-feeding
vector (passed through unchanged without input feeding); `attention` is the mask as floats without attention.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.model.cells import CellState
from seq2seq.model.decoder import DecoderState, Memory
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.vocab import PAD_ID

OPSET = 18
GATE_ORDER = {"gru": [1, 0, 2], "lstm": [0, 3, 1, 2], "rnn": [0]}  # ONNX's gate blocks, as PyTorch's block numbers
ONNX_OPS = {"gru": "GRU", "lstm": "LSTM", "rnn": "RNN"}
KINDS = {"RNN_TANH": "rnn", "GRU": "gru", "LSTM": "lstm"}  # nn.RNNBase.mode -> cell name
DECODER_INPUTS = ("prev", "state", "feed", "values", "keys", "mask", "context")
DECODER_OUTPUTS = ("log_probs", "state_out", "feed_out", "attention")
ENCODER_OUTPUTS = ("values", "mask", "context", "keys", "state")


def _gates(weight: Tensor, kind: str, hidden: int) -> Tensor:
    """PyTorch's stacked gate blocks (gates * hidden, ...) in ONNX's order."""
    blocks = weight.detach().float().split(hidden, dim=0)
    return torch.cat([blocks[i] for i in GATE_ORDER[kind]], dim=0)


def encoder_graph(model: Seq2Seq) -> Any:
    """The encoder, the attention keys and the decoder's first state as one ONNX model (an `onnx.ModelProto`):
    src (batch, src_len) int64, src_lengths (batch,) int64 (EOS included) -> ENCODER_OUTPUTS ("keys" only with
    attention)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    encoder, decoder, rnn = model.encoder, model.decoder, model.encoder.rnn
    kind, hidden, directions = KINDS[rnn.mode], rnn.hidden_size, encoder.num_directions
    initializers, nodes = [], []

    def constant(name: str, value: Tensor | np.ndarray) -> str:
        array = value.detach().float().numpy() if torch.is_tensor(value) else value
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], **attributes: Any) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, **attributes))

    constant("embedding", encoder.embedding.weight)
    constant("pad", np.array([PAD_ID], dtype=np.int64))
    node("Gather", ["embedding", "src"], ["embedded"])  # (batch, src_len, embedding)
    node("Transpose", ["embedded"], ["x0"], perm=[1, 0, 2])  # (src_len, batch, embedding): time first
    node("Cast", ["src_lengths"], ["lengths32"], to=TensorProto.INT32)
    x = "x0"
    for layer in range(rnn.num_layers):
        w, r, b = [], [], []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w.append(_gates(getattr(rnn, "weight_ih" + suffix), kind, hidden))
            r.append(_gates(getattr(rnn, "weight_hh" + suffix), kind, hidden))
            b_ih = _gates(getattr(rnn, "bias_ih" + suffix).unsqueeze(1), kind, hidden).squeeze(1)
            b_hh = _gates(getattr(rnn, "bias_hh" + suffix).unsqueeze(1), kind, hidden).squeeze(1)
            b.append(torch.cat([b_ih, b_hh]))
        inputs = [x, constant(f"W{layer}", torch.stack(w)), constant(f"R{layer}", torch.stack(r))]
        inputs += [constant(f"B{layer}", torch.stack(b)), "lengths32"]
        attributes: dict[str, Any] = {"hidden_size": hidden}
        attributes["direction"] = "bidirectional" if directions == 2 else "forward"
        if kind == "gru":
            attributes["linear_before_reset"] = 1  # PyTorch's GRU: r * (W_hn h + b_hn)
        if kind == "rnn":
            attributes["activations"] = ["Tanh"] * directions
        outputs = [f"Y{layer}", f"Y_h{layer}"] + ([f"Y_c{layer}"] if kind == "lstm" else [])
        node(ONNX_OPS[kind], inputs, outputs, **attributes)  # Y (src_len, directions, batch, hidden)
        constant(f"layer_shape{layer}", np.array([0, 0, directions * hidden], dtype=np.int64))
        node("Transpose", [f"Y{layer}"], [f"Y_t{layer}"], perm=[0, 2, 1, 3])
        node("Reshape", [f"Y_t{layer}", f"layer_shape{layer}"], [f"x{layer + 1}"])  # (src_len, batch, dirs * hidden)
        x = f"x{layer + 1}"
    top = rnn.num_layers - 1
    constant("summary_shape", np.array([0, directions * hidden], dtype=np.int64))
    constant("axis2", np.array([2], dtype=np.int64))
    node("Transpose", [x], ["outputs"], perm=[1, 0, 2])  # (batch, src_len, encoder)
    node("Equal", ["src", "pad"], ["is_pad"])
    node("Not", ["is_pad"], ["mask"])
    node("Cast", ["mask"], ["mask_float"], to=TensorProto.FLOAT)
    node("Unsqueeze", ["mask_float", "axis2"], ["mask_3d"])
    node("Mul", ["outputs", "mask_3d"], ["values"])  # zero at padding, as packing leaves it
    # the summary: the forward direction's state at the last real token, the backward one's at the first
    node("Transpose", [f"Y_h{top}"], ["final"], perm=[1, 0, 2])
    node("Reshape", ["final", "summary_shape"], ["context"])
    outputs = ["values", "mask", "context"]
    attention = decoder.attention
    if attention is not None:
        if attention.kind == "luong_dot":
            node("Identity", ["values"], ["keys"])
        else:
            node("MatMul", ["values", constant("key_layer", attention.key_layer.weight.t())], ["keys"])
        outputs.append("keys")
    states = 2 if decoder.cell_kind == "lstm" else 1  # the bridge: tanh(W_b c + b) for every layer's h (and c)
    constant("bridge_shape", np.array([0, decoder.num_layers * states, decoder.hidden_size], dtype=np.int64))
    node("MatMul", ["context", constant("bridge_weight", decoder.bridge.weight.t())], ["bridge_product"])
    node("Add", ["bridge_product", constant("bridge_bias", decoder.bridge.bias)], ["bridge_sum"])
    node("Tanh", ["bridge_sum"], ["bridge_out"])
    node("Reshape", ["bridge_out", "bridge_shape"], ["states_by_row"])
    node("Transpose", ["states_by_row"], ["state"], perm=[1, 0, 2])  # (layers * states, batch, hidden)
    outputs.append("state")
    shapes = {
        "values": ["batch", "src_len", "encoder"],
        "mask": ["batch", "src_len"],
        "context": ["batch", "encoder"],
        "keys": ["batch", "src_len", "keys"],
        "state": ["states", "batch", "hidden"],
    }
    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info("src", TensorProto.INT64, ["batch", "src_len"]),
            helper.make_tensor_value_info("src_lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info(name, TensorProto.BOOL if name == "mask" else TensorProto.FLOAT, shapes[name])
            for name in outputs
        ],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="seq2seq")
    proto.ir_version = 8  # what onnxruntime 1.17 and later read
    onnx.checker.check_model(proto)
    return proto


class DecoderStep(nn.Module):
    """`Seq2Seq.decode_step` with plain tensors in and out, for `torch.onnx.export` (see the module's docstring)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        self.layers = model.decoder.num_layers
        self.lstm = model.decoder.cell_kind == "lstm"

    def forward(
        self, prev: Tensor, state: Tensor, feed: Tensor, values: Tensor, keys: Tensor, mask: Tensor, context: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        decoder = self.model.decoder
        if decoder.attention is None:  # the fixed context, and the mask returned as weights, once per row
            rows, group = prev.size(0), prev.size(0) // context.size(0)
            context = context.unsqueeze(1).expand(-1, group, -1).reshape(rows, -1)
            mask = mask.unsqueeze(1).expand(-1, group, -1).reshape(rows, -1)
        hidden = tuple(state[: self.layers].unbind(0))
        cells = tuple(state[self.layers :].unbind(0)) if self.lstm else None
        current = DecoderState(CellState(hidden, cells), feed if decoder.input_feeding else None)
        memory = Memory(values, keys if decoder.attention is not None else None, mask, context)
        log_probs, new, weights = self.model.decode_step(prev, current, memory)
        new_state = torch.stack(new.rnn.hidden + (new.rnn.cell or ()))
        new_feed = new.feed if new.feed is not None else feed
        return log_probs, new_state, new_feed, weights if weights is not None else mask.float()


def decoder_example(model: Seq2Seq, rows: int = 6, sentences: int = 3, src_len: int = 5) -> tuple[Tensor, ...]:
    """Inputs of `DecoderStep` for tracing: several rows per sentence, sentences and source positions, so that
    none is fixed."""
    decoder = model.decoder
    states = 2 if decoder.cell_kind == "lstm" else 1
    encoder_size = model.encoder.output_size
    keys_size = encoder_size
    if decoder.attention is not None and decoder.attention.kind != "luong_dot":
        keys_size = decoder.attention.key_layer.out_features
    return (
        torch.full((rows,), 2, dtype=torch.long),
        torch.zeros(decoder.num_layers * states, rows, decoder.hidden_size),
        torch.zeros(rows, decoder.readout.out_features),
        torch.zeros(sentences, src_len, encoder_size),
        torch.zeros(sentences, src_len, keys_size),
        torch.ones(sentences, src_len, dtype=torch.bool),
        torch.zeros(sentences, encoder_size),
    )


def export_decoder_step(model: Seq2Seq, path: Path) -> None:
    """Write the decoder step of `model` (eval mode, on the CPU) to `path` as ONNX, rows and source length
    dynamic."""
    rows = torch.export.Dim("rows", min=1, max=65536)
    sentences = torch.export.Dim("sentences", min=1, max=65536)
    src_len = torch.export.Dim("src_len", min=1, max=65536)
    dynamic = {
        "prev": {0: rows},
        "state": {1: rows},
        "feed": {0: rows},
        "values": {0: sentences, 1: src_len},
        "keys": {0: sentences, 1: src_len},
        "mask": {0: sentences, 1: src_len},
        "context": {0: sentences},
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            DecoderStep(model).eval(),
            decoder_example(model),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=list(DECODER_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            opset_version=OPSET,
            verbose=False,
        )
    program.save(str(path))
