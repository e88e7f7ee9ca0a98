import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.data.batches import make_batch
from seq2seq.model.seq2seq import build_model
from seq2seq.vocab import BOS_ID


def fed_tokens(model, batch, ratio, seed=0):
    """The tokens the decoder's embedding was fed, step by step: (tgt_len, batch)."""
    fed = []
    hook = model.decoder.embedding.register_forward_hook(lambda mod, inp, out: fed.append(inp[0].clone()))
    try:
        model(batch.src, batch.src_lengths, batch.tgt_in, ratio, torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    if len(fed) == 1 and fed[0].dim() == 2:  # teacher forcing: the whole target (batch, tgt_len) looked up at once
        return fed[0].T
    return torch.stack(fed)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_teacher_forcing_ratio_changes_what_the_decoder_is_fed(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, embedding_size=8, hidden_size=8, dropout=0.0), 30, 30)
    batch = make_batch([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15, 16, 17]])
    gold = batch.tgt_in.T  # (tgt_len, batch)
    assert torch.equal(fed_tokens(model, batch, 1.0), gold)
    free = fed_tokens(model, batch, 0.0)
    assert torch.equal(free[0], torch.full((2,), BOS_ID))  # the first input is always BOS
    assert not torch.equal(free, gold)
    # ratio 0: every later input is the model's own previous prediction
    logits = model(batch.src, batch.src_lengths, batch.tgt_in, 0.0)
    assert torch.equal(free[1:], logits.argmax(-1).T[:-1])
    # in between: a mix, and reproducible from the generator's seed
    mixed = fed_tokens(model, batch, 0.5, seed=1)
    assert torch.equal(mixed, fed_tokens(model, batch, 0.5, seed=1))


def test_teacher_forcing_one_and_per_step_logits_agree():
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=8, hidden_size=8, dropout=0.0), 30, 30)
    batch = make_batch([[5, 6, 7]], [[10, 11, 12]])
    # A ratio just under 1 takes the per-step path (logits at every step) yet feeds gold tokens: same logits.
    a = model(batch.src, batch.src_lengths, batch.tgt_in, 1.0)
    b = model(batch.src, batch.src_lengths, batch.tgt_in, 1.0 - 1e-9, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


def test_tied_embeddings_share_the_output_matrix():
    model = build_model(ModelConfig(embedding_size=16, hidden_size=8, tie_embeddings=True), 30, 40)
    assert model.decoder.output.weight is model.decoder.embedding.weight


def test_without_attention_the_decoder_sees_only_the_fixed_context():
    torch.manual_seed(0)
    model = build_model(ModelConfig(attention="none", embedding_size=8, hidden_size=8, dropout=0.0), 30, 30).eval()
    batch = make_batch([[5, 6, 7, 8]], [[10, 11]])
    memory, _ = model.encode(batch.src, batch.src_lengths)
    assert model.decoder.attention is None and memory.keys is None
    # Changing encoder outputs at non-final positions cannot change the decoder's output...
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    state = model.decoder.init_state(memory)
    memory.values = torch.randn_like(memory.values)
    logits2 = model.decoder(batch.tgt_in, memory, state)
    torch.testing.assert_close(logits, logits2)


def stepwise_logits(model, batch):
    """The decoder's logits from `step` called once per target position (the input-feeding path's loop)."""
    memory, state = model.encode(batch.src, batch.src_lengths)
    readouts = []
    for t in range(batch.tgt_in.size(1)):
        readout, state, _ = model.decoder.step(batch.tgt_in[:, t], state, memory)
        readouts.append(readout)
    return model.decoder.logits(torch.stack(readouts, dim=1))


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("attention", ["bahdanau", "luong_general", "none"])
@pytest.mark.parametrize("layers", [1, 2])
def test_without_input_feeding_the_fused_decoder_equals_the_step_loop(cell, attention, layers):
    """Training without input feeding runs the decoder RNN as one fused kernel and attends for all steps at
    once (`Decoder.all_steps`): the same logits and the same gradients as stepping."""
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, attention=attention, embedding_size=8, hidden_size=8, dropout=0.0)
    cfg.decoder_layers, cfg.input_feeding = layers, False
    model = build_model(cfg, 30, 30)
    batch = make_batch([[5, 6, 7, 9], [8, 9]], [[10, 11, 12, 13, 14], [14, 15]])
    fused = model(batch.src, batch.src_lengths, batch.tgt_in, 1.0)
    stepped = stepwise_logits(model, batch)
    torch.testing.assert_close(fused, stepped, atol=1e-5, rtol=1e-5)
    grads = []
    for logits in (fused, stepped):
        model.zero_grad()
        logits.square().mean().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_fused_decoder_is_only_used_without_input_feeding():
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=8, hidden_size=8, dropout=0.0), 30, 30)
    batch = make_batch([[5, 6, 7]], [[10, 11, 12]])
    assert model.decoder.input_feeding
    with pytest.raises(AssertionError, match="input feeding"):
        model.decoder.all_steps(batch.tgt_in, *reversed(model.encode(batch.src, batch.src_lengths)))
