import pytest
import torch

from seq2seq.model.cells import StackedCell
from seq2seq.model.dropout import LEVELS, Dropout, dropout


def test_keeps_each_element_with_probability_one_minus_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(0.7, abs=0.003)
    threshold = round(0.3 * LEVELS)
    assert torch.all(y[kept] == LEVELS / (LEVELS - threshold))  # 1 / (1 - rounded p)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.005)


def test_every_16_bit_lane_of_a_64_bit_draw_is_uniform():
    """Element i takes lane i % 4 of a 64-bit draw; drawing only [0, 2**63) would drop lane 3's elements
    twice as often (its top bit always 0)."""
    torch.manual_seed(1)
    kept = dropout(torch.ones(4 * 250_000), 0.2, training=True) != 0
    for lane in range(4):
        assert float(kept[lane::4].float().mean()) == pytest.approx(0.8, abs=0.004), lane


def test_identity_in_evaluation_and_at_p_zero():
    x = torch.randn(7, 5)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    module = Dropout(0.5).eval()
    assert torch.equal(module(x), x)


def test_gradient_is_the_mask_and_the_same_seed_draws_the_same_mask():
    x = torch.rand(64, 33) + 0.5  # no zeros, so y / x recovers the mask
    x.requires_grad_()
    torch.manual_seed(3)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    assert torch.allclose(x.grad, y.detach() / x.detach())
    torch.manual_seed(3)
    again = dropout(x.detach(), 0.25, training=True)
    assert torch.equal(again, y.detach())
    assert not torch.equal(dropout(x.detach(), 0.25, training=True), y.detach())  # the generator moved on


def test_odd_sizes_and_other_dtypes():
    torch.manual_seed(4)
    for shape in [(1,), (3, 5, 7), (2, 0, 4)]:
        y = dropout(torch.ones(shape, dtype=torch.bfloat16), 0.5, training=True)
        assert y.shape == shape and y.dtype == torch.bfloat16
        assert torch.all((y == 0) | (y == 2))


def test_the_stacked_cells_fused_path_reads_its_rate():
    cell = StackedCell("gru", 4, 6, num_layers=2, dropout=0.4)
    assert isinstance(cell.dropout, Dropout) and cell.dropout.p == 0.4
