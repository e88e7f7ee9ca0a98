"""The insight probe: the unrolled encoder, gate statistics, the gradient by distance, attention heatmaps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import ModelConfig
from seq2seq.data.batches import make_batch
from seq2seq.model.cells import cell_equations
from seq2seq.model.encoder import Encoder
from seq2seq.model.seq2seq import build_model
from seq2seq.training.insight import (
    InsightProbe,
    gate_statistics,
    gradient_by_distance,
    norms_by_distance,
    trace_batch,
    unroll_encoder,
)
from seq2seq.vocab import PAD_ID

from .conftest import load_script
from .tiny_models import CORPUS, corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer

VOCAB = 40


def ragged_ids(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in lengths]


def untrained_model(cell: str, attention: str = "bahdanau", **model):
    """Over VOCAB ids (no tokenizer), for the random batches of `tiny_batch`."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, attention=attention, embedding_size=16, hidden_size=16, dropout=0.3, **model)
    return build_model(cfg, VOCAB, VOCAB).eval()


def tiny_batch(src_lengths=(7, 3, 1, 5), tgt_lengths=(6, 4, 2, 5)):
    return make_batch(ragged_ids(list(src_lengths), seed=1), ragged_ids(list(tgt_lengths), seed=2))


class RecordingWriter:
    """Stands in for SummaryWriter: remembers what was logged."""

    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.histograms: dict[str, torch.Tensor] = {}
        self.figures: dict[str, object] = {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_histogram(self, tag, values, step):
        self.histograms[tag] = values

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure


# ----------------------------------------------------------------- unrolled encoder
@pytest.mark.parametrize(("cell", "bidirectional"), [("gru", True), ("lstm", True), ("rnn", True), ("lstm", False)])
def test_unrolled_encoder_matches_the_fused_encoder(cell, bidirectional):
    torch.manual_seed(0)
    encoder = Encoder(cell, VOCAB, 8, 16, num_layers=2, dropout=0.3, bidirectional=bidirectional, pad_id=PAD_ID)
    encoder.eval()
    batch = tiny_batch()
    with torch.no_grad():
        fused_outputs, fused_summary = encoder(batch.src, batch.src_lengths)
        trace = unroll_encoder(encoder, batch.src, batch.src_lengths)
    assert trace.outputs.shape == fused_outputs.shape
    torch.testing.assert_close(trace.outputs, fused_outputs, atol=1e-5, rtol=0)
    torch.testing.assert_close(trace.summary, fused_summary, atol=1e-5, rtol=0)
    directions = ["forward", "backward"] if bidirectional else ["forward"]
    assert set(trace.gates) == {f"encoder_l{layer}_{d}" for layer in range(2) for d in directions}


def test_unrolled_gates_are_those_of_cell_equations():
    model = untrained_model("lstm")
    batch = tiny_batch()
    rnn = model.encoder.rnn
    with torch.no_grad():
        trace = unroll_encoder(model.encoder, batch.src, batch.src_lengths)
        x = model.encoder.embedding(batch.src[:, 0])  # the first step, from zero states
        zeros = x.new_zeros(x.size(0), 16)
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        _, _, gates = cell_equations("lstm", x, zeros, zeros, *weights)
    for name in ("input", "forget", "output"):
        torch.testing.assert_close(trace.gates["encoder_l0_forward"][name][:, 0], gates[name])


def test_the_memory_of_the_unrolled_encoder_gives_the_model_loss():
    model = untrained_model("gru", encoder_layers=2)
    batch = tiny_batch()
    trace = trace_batch(model, batch)
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID, reduction="sum")
    assert trace.loss == pytest.approx(float(loss), rel=1e-5)


# --------------------------------------------------------------------------- gates
def test_an_open_update_gate_is_seen_as_open_and_saturated_only_at_real_positions():
    model = untrained_model("gru", decoder_layers=2)
    with torch.no_grad():  # GRU gate order (r, z, n): z is the second chunk
        for name, p in [*model.encoder.rnn.named_parameters(), *model.decoder.rnn.named_parameters()]:
            if "bias_ih" in name:
                p[16:32] = 20.0
    batch = tiny_batch()
    trace = trace_batch(model, batch)
    assert set(trace.gates) == {"encoder_l0_forward", "encoder_l0_backward", "decoder_l0", "decoder_l1"}
    stats = gate_statistics(trace.gates)
    for part in trace.gates:
        assert stats[f"gates/{part}/update_mean"] == pytest.approx(1.0, abs=1e-4)
        assert stats[f"gates/{part}/update_saturated"] == pytest.approx(1.0)
        assert stats[f"gates/{part}/reset_mean"] < 0.9
    # only real positions count: one row per real source token / per target token to predict
    assert trace.gates["encoder_l0_backward"]["update"].shape == (int(batch.src_lengths.sum()), 16)
    assert trace.gates["decoder_l1"]["reset"].shape == (batch.num_tgt_tokens, 16)


@pytest.mark.parametrize(("scale", "low", "high"), [(50.0, 0.9, 1.0), (1e-3, 0.0, 0.01)])
def test_tanh_saturation_follows_the_weight_scale(scale, low, high):
    model = untrained_model("rnn")
    with torch.no_grad():
        for name, p in [*model.encoder.rnn.named_parameters(), *model.decoder.rnn.named_parameters()]:
            if "weight" in name:
                p.mul_(scale)
    stats = gate_statistics(trace_batch(model, tiny_batch()).gates)
    saturated = {tag: v for tag, v in stats.items() if tag.endswith("hidden_saturated")}
    assert len(saturated) == 3  # encoder forward, backward, decoder
    assert all(low <= v <= high for v in saturated.values()), saturated


# ---------------------------------------------------------------- gradient by distance
def test_norms_by_distance_average_each_distance_over_the_sentences_that_have_it():
    norms = torch.tensor([[1.0, 2.0, 3.0], [5.0, 7.0, 0.0]])
    assert norms_by_distance(norms, torch.tensor([3, 2])) == [5.0, 3.5, 1.0]


def test_the_gradient_vanishes_with_distance_in_a_tanh_rnn_without_attention():
    model = untrained_model("rnn", attention="none")
    with torch.no_grad():
        model.encoder.rnn.weight_hh_l0.mul_(0.3)
        model.encoder.rnn.weight_hh_l0_reverse.mul_(0.3)
    norms = gradient_by_distance(model, tiny_batch(src_lengths=(12, 12, 12), tgt_lengths=(5, 6, 7)))
    assert len(norms) == 13  # 12 tokens and the EOS
    assert all(far < near for near, far in zip(norms, norms[1:])), norms
    assert norms[-1] < 1e-3 * norms[0], norms


def test_an_open_update_gate_carries_the_gradient_to_the_start():
    model = untrained_model("gru", attention="none", bidirectional=False)
    with torch.no_grad():
        model.encoder.rnn.bias_ih_l0[16:32] = 20.0  # z -> 1: h' = h, the identity through time
    norms = gradient_by_distance(model, tiny_batch(src_lengths=(12, 12, 12), tgt_lengths=(5, 6, 7)))
    assert norms[-1] / norms[0] == pytest.approx(1.0, rel=0.05)


# ------------------------------------------------------------------------ the probe
@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(vocab_size=120, joint=True)


def probe_and_model(tokenizer, attention: str):
    settings = {"embedding_size": 16, "hidden_size": 16, "dropout": 0.3}
    model, _ = tiny_model(tokenizer, seed=0, cell="lstm", attention=attention, **settings)
    src_lines, tgt_lines = corpus_lines("val", 3)
    src, tgt = tokenizer.encode_src(src_lines), tokenizer.encode_tgt(tgt_lines)
    return InsightProbe(tokenizer, src, tgt, torch.device("cpu")), model, src


def test_the_probe_logs_everything_and_leaves_training_untouched(tokenizer):
    probe, model, src = probe_and_model(tokenizer, "bahdanau")
    model.train()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    writer = RecordingWriter()
    scalars = probe.log(writer, model, step=7)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, grads[n]), n
    # what it logged
    assert scalars == writer.scalars
    for part in ("encoder_l0_forward", "encoder_l0_backward", "decoder_l0"):
        for gate in ("input", "forget", "output"):
            assert 0.0 < scalars[f"gates/{part}/{gate}_mean"] < 1.0
            assert 0.0 <= scalars[f"gates/{part}/{gate}_saturated"] <= 1.0
            assert f"gates/{part}/{gate}" in writer.histograms
    assert scalars["gradients/norm_at_end"] > 0.0
    assert scalars["gradients/norm_ratio_far_to_end"] > 0.0
    assert set(writer.figures) == {"gradients/by_distance_from_end", *(f"attention/sentence_{i}" for i in range(3))}
    heatmap = writer.figures["attention/sentence_0"].axes[0]
    assert [t.get_text() for t in heatmap.get_xticklabels()] == [tokenizer.src.id_to_piece(i) for i in src[0]] + [
        "</s>"
    ]
    rows = len(heatmap.get_yticklabels())
    assert heatmap.images[0].get_array().shape == (rows, len(src[0]) + 1)


def test_no_heatmaps_without_attention(tokenizer):
    probe, model, _ = probe_and_model(tokenizer, "none")
    model.eval()
    writer = RecordingWriter()
    probe.log(writer, model, step=1)
    assert set(writer.figures) == {"gradients/by_distance_from_end"}
    assert not model.training


# ------------------------------------------------------------------- the docs script
def test_the_figures_script_writes_one_png_set_per_checkpoint(tokenizer, tmp_path):
    import json

    checkpoints = [
        tiny_checkpoint(tmp_path / f"{cell}.pt", tokenizer, seed=0, decode={}, cell=cell, attention=attention)
        for cell, attention in (("rnn", "none"), ("gru", "bahdanau"))
    ]
    script = load_script("insight_figures")
    out = tmp_path / "figures"
    common = ["--src-file", str(CORPUS / "val.de"), "--dpi", "40"]
    script.main(
        [*map(str, checkpoints), *common, "--tgt-file", str(CORPUS / "val.en"), "--sentences", "2", "--out", str(out)]
    )
    assert sorted(p.name for p in out.glob("*.png")) == [
        "attention_gru_attention_bahdanau.png",
        "gates_gru_attention_bahdanau.png",
        "gates_rnn_attention_none.png",
        "gradient_by_distance.png",
    ]
    numbers = json.loads((out / "insight.json").read_text())
    assert (
        set(numbers["gradient_by_distance"])
        == set(numbers["gates"])
        == {
            "gru, attention=bahdanau",
            "rnn, attention=none",
        }
    )
    # without references, the model's own greedy output stands in
    script.main([str(checkpoints[0]), *common, "--sentences", "1", "--out", str(out / "own")])
    assert (out / "own" / "gradient_by_distance.png").stat().st_size > 1000
