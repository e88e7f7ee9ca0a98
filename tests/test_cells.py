"""Each cell's step matches a NumPy implementation of its gate equations, with the same random weights."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.model.cells import CellState, StackedCell, cell_equations, make_sequence_rnn, tanh, tanh_
from seq2seq.model.encoder import run_unpacked


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(cell, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """The textbook equations, written independently of seq2seq.model.cells (PyTorch gate order)."""
    if cell == "rnn":
        return np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh), None
    if cell == "gru":
        hid = h.shape[1]
        W_ir, W_iz, W_in = w_ih[:hid], w_ih[hid : 2 * hid], w_ih[2 * hid :]
        W_hr, W_hz, W_hn = w_hh[:hid], w_hh[hid : 2 * hid], w_hh[2 * hid :]
        b_ir, b_iz, b_in = b_ih[:hid], b_ih[hid : 2 * hid], b_ih[2 * hid :]
        b_hr, b_hz, b_hn = b_hh[:hid], b_hh[hid : 2 * hid], b_hh[2 * hid :]
        r = sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        return (1 - z) * n + z * h, None
    if cell == "lstm":
        hid = h.shape[1]
        pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i = sigmoid(pre[:, :hid])
        f = sigmoid(pre[:, hid : 2 * hid])
        g = np.tanh(pre[:, 2 * hid : 3 * hid])
        o = sigmoid(pre[:, 3 * hid :])
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    raise ValueError(cell)


def random_weights(cell, input_size, hidden, rng):
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    return [
        rng.standard_normal(shape).astype(np.float64) * 0.5
        for shape in [(gates * hidden, input_size), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,)]
    ]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_decoder_cell_step_matches_numpy(cell):
    rng = np.random.default_rng(0)
    batch, input_size, hidden = 4, 5, 3
    weights = random_weights(cell, input_size, hidden, rng)
    stack = StackedCell(cell, input_size, hidden, num_layers=1, dropout=0.0).double()
    layer = stack.layers[0]
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weights):
            getattr(layer, name).copy_(torch.from_numpy(value))
    x, h, c = (rng.standard_normal((batch, n)) for n in (input_size, hidden, hidden))
    state = CellState((torch.from_numpy(h),), (torch.from_numpy(c),) if cell == "lstm" else None)
    out, new_state = stack(torch.from_numpy(x), state)
    expected_h, expected_c = numpy_step(cell, x, h, c, *weights)
    np.testing.assert_allclose(out.detach().numpy(), expected_h, rtol=1e-10, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(new_state.cell[0].detach().numpy(), expected_c, rtol=1e-10, atol=1e-12)
    # The spelled-out equations (used for gate introspection) agree too.
    t = [torch.from_numpy(w) for w in weights]
    h_eq, c_eq, gates = cell_equations(
        cell, torch.from_numpy(x), torch.from_numpy(h), torch.from_numpy(c) if cell == "lstm" else None, *t
    )
    np.testing.assert_allclose(h_eq.numpy(), expected_h, rtol=1e-10, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(c_eq.numpy(), expected_c, rtol=1e-10, atol=1e-12)
        assert set(gates) == {"input", "forget", "output"}
    elif cell == "gru":
        assert set(gates) == {"reset", "update"}
    for g in gates.values():
        assert g.shape == (batch, hidden)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_encoder_rnn_shares_one_set_of_weights_across_time(cell):
    """The fused encoder RNN over a sequence equals the NumPy step applied with the same weights at every t."""
    rng = np.random.default_rng(1)
    batch, steps, input_size, hidden = 3, 6, 4, 5
    rnn = make_sequence_rnn(cell, input_size, hidden, num_layers=1, dropout=0.0, bidirectional=False).double()
    weights = [getattr(rnn, f"{n}_l0").detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    xs = rng.standard_normal((batch, steps, input_size))
    out, _ = rnn(torch.from_numpy(xs))
    h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    for t in range(steps):
        h, c_new = numpy_step(cell, xs[:, t], h, c, *weights)
        c = c_new if c_new is not None else c
        np.testing.assert_allclose(out[:, t].detach().numpy(), h, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_unpacked_encoder_equals_the_packed_rnn(cell, layers, bidirectional):
    """The CPU encoder path (no packing; the backward direction reversed within each length) gives the
    packed nn.RNN/GRU/LSTM's outputs, final states and gradients."""
    torch.manual_seed(0)
    rnn = make_sequence_rnn(cell, 4, 5, num_layers=layers, dropout=0.0, bidirectional=bidirectional).double()
    lengths = torch.tensor([6, 2, 4, 1, 6])
    x = torch.randn(5, 6, 4, dtype=torch.float64, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    packed_out, final = rnn(packed)
    expected, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=6)
    final = final[0] if cell == "lstm" else final
    expected_summary = torch.cat(tuple(final.view(layers, -1, 5, 5)[-1]), dim=1)
    outputs, summary = run_unpacked(rnn, x, lengths)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(summary, expected_summary)
    weight = rnn.weight_hh_l0_reverse if bidirectional else rnn.weight_hh_l0
    probe = torch.randn_like(outputs)
    ours = torch.autograd.grad((outputs * probe).sum() + summary.sum(), (x, weight))
    theirs = torch.autograd.grad((expected * probe).sum() + expected_summary.sum(), (x, weight))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_stacked_cell_layers_feed_each_other():
    stack = StackedCell("gru", 4, 3, num_layers=2, dropout=0.0)
    state = CellState((torch.zeros(2, 3), torch.zeros(2, 3)))
    out, new = stack(torch.randn(2, 4), state)
    assert torch.equal(out, new.hidden[1])
    assert not torch.equal(new.hidden[0], new.hidden[1])


def test_search_tanh_is_tanh_in_place_outside_autograd():
    x = torch.linspace(-12, 12, 10001)
    y = x.clone()
    assert tanh_(y) is y  # in place: no new tensor in the search's inner loop
    assert float((y - torch.tanh(x)).abs().max()) < 1e-6
    assert tanh_(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_training_tanh_has_tanh_values_and_gradients():
    x = (torch.randn(4, 7, 9) * 3).requires_grad_()
    exact = x.detach().clone().requires_grad_()
    y, reference = tanh(x), torch.tanh(exact)
    torch.testing.assert_close(y, reference, atol=1e-6, rtol=0)
    weights = torch.randn(4, 7, 9)
    (y * weights).sum().backward()
    (reference * weights).sum().backward()
    torch.testing.assert_close(x.grad, exact.grad, atol=1e-5, rtol=0)
