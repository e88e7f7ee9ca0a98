import pytest
import torch

from seq2seq.model.attention import Attention


@pytest.mark.parametrize("kind", ["bahdanau", "luong_general", "luong_dot"])
def test_weights_sum_to_one_and_ignore_padding(kind):
    torch.manual_seed(0)
    batch, src_len, size = 3, 7, 6
    attention = Attention(kind, query_size=size, key_size=size)
    memory = torch.randn(batch, src_len, size)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(src_len).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, src_len)
    query = torch.randn(batch, 1, size)  # one decoder step
    context, weights = attention(query, attention.project_keys(memory), memory, mask)
    assert context.shape == (batch, 1, size) and weights.shape == (batch, 1, src_len)
    context, weights = context.squeeze(1), weights.squeeze(1)
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
    query = torch.randn(2, 1, 4)
    context, _ = attention(query, attention.project_keys(memory), memory, mask)
    noisy = memory.clone()
    noisy[1, 3:] = 100.0
    context2, _ = attention(query, attention.project_keys(noisy), noisy, mask)
    torch.testing.assert_close(context, context2)


@pytest.mark.parametrize("kind", ["bahdanau", "luong_general", "luong_dot"])
def test_all_steps_at_once_equal_one_step_at_a_time(kind):
    """Queries of several decoder steps in one call (training without input feeding) give each step's
    context and weights as separate calls do."""
    torch.manual_seed(2)
    attention = Attention(kind, query_size=6, key_size=6)
    memory = torch.randn(3, 5, 6)
    mask = torch.arange(5).unsqueeze(0) < torch.tensor([[5], [3], [1]])
    keys = attention.project_keys(memory)
    queries = torch.randn(3, 4, 6)  # (batch, steps, query)
    context, weights = attention(queries, keys, memory, mask)
    for t in range(4):
        one_context, one_weights = attention(queries[:, t : t + 1], keys, memory, mask)
        torch.testing.assert_close(context[:, t], one_context[:, 0])
        torch.testing.assert_close(weights[:, t], one_weights[:, 0])


def test_dot_attention_needs_equal_sizes():
    with pytest.raises(ValueError, match="luong_dot"):
        Attention("luong_dot", query_size=4, key_size=8)
