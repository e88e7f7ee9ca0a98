import pytest
import torch

from seq2seq.attention import Attention


@pytest.mark.parametrize("kind", ["bahdanau", "luong_general", "luong_dot"])
def test_weights_sum_to_one_and_ignore_padding(kind):
    torch.manual_seed(0)
    batch, src_len, size = 3, 7, 6
    attention = Attention(kind, query_size=size, key_size=size)
    memory = torch.randn(batch, src_len, size)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(src_len).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, src_len)
    query = torch.randn(batch, size)
    context, weights = attention(query, attention.project_keys(memory), memory, mask)
    assert weights.shape == (batch, src_len)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(batch))
    assert torch.all(weights[~mask] == 0)  # exactly zero, not just small
    assert torch.all(weights[mask] > 0)
    torch.testing.assert_close(context, torch.einsum("bs,bsv->bv", weights, memory))
    # A one-token source attends only to it.
    torch.testing.assert_close(weights[2, 0], torch.tensor(1.0))


def test_padding_content_does_not_change_the_context():
    torch.manual_seed(1)
    attention = Attention("bahdanau", query_size=4, key_size=5)
    memory = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    query = torch.randn(2, 4)
    context, _ = attention(query, attention.project_keys(memory), memory, mask)
    noisy = memory.clone()
    noisy[1, 3:] = 100.0
    context2, _ = attention(query, attention.project_keys(noisy), noisy, mask)
    torch.testing.assert_close(context, context2)


def test_dot_attention_needs_equal_sizes():
    with pytest.raises(ValueError, match="luong_dot"):
        Attention("luong_dot", query_size=4, key_size=8)
