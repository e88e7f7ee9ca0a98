"""Greedy and beam search share one step function; beam 1 == greedy; beam can beat greedy."""

from dataclasses import dataclass

import pytest
import torch

from seq2seq.config import DecodeConfig, ModelConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.model_search import ModelState, max_output_lengths, model_step, translate_batch
from seq2seq.decoding.search import beam_search, greedy_search
from seq2seq.model.seq2seq import build_model
from seq2seq.vocab import BOS_ID, EOS_ID


@pytest.mark.parametrize("cell,attention", [("gru", "bahdanau"), ("lstm", "none"), ("rnn", "luong_general")])
def test_beam_size_one_gives_the_greedy_output(cell, attention):
    torch.manual_seed(3)
    model = build_model(ModelConfig(cell=cell, attention=attention, embedding_size=16, hidden_size=24), 40, 30).eval()
    batch = make_batch([[5, 6, 7, 8], [9, 10], [11, 12, 13], [14]])
    # beam_search itself with one beam (not the greedy shortcut):
    memory, decoder_state = model.encode(batch.src, batch.src_lengths)
    state = ModelState(decoder_state, memory)
    max_lengths = torch.full((batch.size,), 12)
    beam = beam_search(model_step(model), state, max_lengths, beam_size=1, alpha=0.6)
    greedy_direct = greedy_search(model_step(model), state, max_lengths)
    assert [h[0].tokens for h in beam] == [h.tokens for h in greedy_direct]
    for b, g in zip(beam, greedy_direct):
        assert b[0].log_prob == pytest.approx(g.log_prob, abs=1e-5)


@dataclass
class TableState:
    """A hand-made decoder 'state': the tokens emitted so far, per row."""

    prefixes: list[tuple[int, ...]]

    def index_select(self, index):
        return TableState([self.prefixes[i] for i in index.tolist()])

    reorder = index_select


A, B = 4, 5  # two ordinary tokens; vocabulary = {pad, unk, bos, eos, A, B}
VOCAB = 6


def table_step(prev, state):
    """A language model where the greedy first choice (A, p=0.6) leads to a flat, unlikely continuation,
    while B (p=0.4) is followed by EOS with certainty. Best sequence: B EOS (0.4) > A x EOS (0.6 * 0.34)."""
    prefixes = [p + (int(t),) for p, t in zip(state.prefixes, prev)]
    rows = []
    for p in prefixes:
        probs = torch.full((VOCAB,), 1e-9)
        generated = p[1:]  # without BOS
        if len(generated) == 0:
            probs[A], probs[B] = 0.6, 0.4
        elif generated == (B,):
            probs[EOS_ID] = 1.0
        elif generated[0] == A and len(generated) == 1:
            probs[A], probs[B], probs[EOS_ID] = 0.33, 0.33, 0.34
        else:
            probs[EOS_ID] = 1.0
        rows.append((probs / probs.sum()).log())
    return torch.stack(rows), TableState(prefixes)


def test_beam_search_finds_a_higher_scoring_output_than_greedy():
    max_lengths = torch.tensor([5])
    greedy = greedy_search(table_step, TableState([()]), max_lengths)[0]
    beams = beam_search(table_step, TableState([(), ()]), max_lengths, beam_size=2, alpha=0.0, nbest=2)[0]
    assert greedy.tokens[0] == A
    assert beams[0].tokens == [B]
    assert beams[0].log_prob > greedy.log_prob + 0.5  # log 0.4 vs log(0.6 * 0.34)
    assert beams[0].score >= beams[1].score  # n-best list, best first
    assert torch.tensor(beams[0].log_prob).exp().item() == pytest.approx(0.4, rel=1e-4)


def test_max_length_is_respected_and_bos_never_generated():
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=8, hidden_size=8), 20, 20).eval()
    batch = make_batch([[5, 6, 7], [8]])
    for beam in (1, 3):
        hyps = translate_batch(model, batch, DecodeConfig(beam_size=beam, max_len_a=1.0, max_len_b=2, nbest=1))
        assert len(hyps[0][0].tokens) <= 5 and len(hyps[1][0].tokens) <= 3
        assert all(BOS_ID not in h[0].tokens and EOS_ID not in h[0].tokens for h in hyps)


def test_nbest_returns_k_distinct_hypotheses_best_first():
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_size=8, hidden_size=8), 20, 20).eval()
    hyps = translate_batch(model, make_batch([[5, 6, 7]]), DecodeConfig(beam_size=4, nbest=3, alpha=0.0))[0]
    assert len(hyps) == 3
    assert len({tuple(h.tokens) for h in hyps}) == 3
    assert hyps[0].score >= hyps[1].score >= hyps[2].score


@dataclass
class CountdownState:
    """Hand-made rows: which sentence each row decodes and how many steps it has taken."""

    sentence: list[int]
    steps: list[int]

    def index_select(self, index):
        return CountdownState([self.sentence[i] for i in index.tolist()], [self.steps[i] for i in index.tolist()])

    reorder = index_select


def countdown_step(lengths, seen_rows):
    """Sentence s prefers A for lengths[s] steps (B second, EOS unlikely), then ends with near certainty."""

    def step(prev, state):
        seen_rows.append(len(state.sentence))
        rows = []
        for s, t in zip(state.sentence, state.steps):
            probs = torch.full((VOCAB,), 1e-6)
            if t < lengths[s]:
                probs[A], probs[B], probs[EOS_ID] = 0.7, 0.25, 0.05
            else:
                probs[EOS_ID] = 0.98
            rows.append((probs / probs.sum()).log())
        return torch.stack(rows), CountdownState(state.sentence, [t + 1 for t in state.steps])

    return step


@pytest.mark.parametrize("beam_size", [1, 3])
def test_done_sentences_leave_the_batch_and_change_nothing(beam_size):
    lengths = [1, 6, 3]
    max_lengths = torch.tensor([10, 10, 10])

    def search(sentences, seen):
        state = CountdownState([s for s in sentences for _ in range(beam_size)], [0] * len(sentences) * beam_size)
        step, limits = countdown_step(lengths, seen), max_lengths[: len(sentences)]
        if beam_size == 1:
            return [[h] for h in greedy_search(step, state, limits)]
        return beam_search(step, state, limits, beam_size, alpha=0.0, nbest=beam_size)

    seen = []
    together = search([0, 1, 2], seen)
    assert seen[0] == 3 * beam_size and seen[-1] == beam_size  # the batch shrinks to the longest sentence
    assert seen == sorted(seen, reverse=True)  # and never grows back
    for s in range(3):
        alone = search([s], [])[0]
        assert [h.tokens for h in together[s]] == [h.tokens for h in alone]
        assert [h.log_prob for h in together[s]] == pytest.approx([h.log_prob for h in alone])


@pytest.mark.parametrize("cell,attention", [("gru", "bahdanau"), ("lstm", "none"), ("rnn", "luong_general")])
def test_beam_rows_share_their_sentence_memory_and_find_what_copies_of_it_find(cell, attention):
    """translate_batch keeps one memory row per sentence for all its beams; copying it per row, as before,
    gives the same hypotheses (sentences of different lengths, so some finish and leave first)."""
    torch.manual_seed(5)
    model = build_model(ModelConfig(cell=cell, attention=attention, embedding_size=16, hidden_size=24), 40, 30).eval()
    batch = make_batch([[5, 6, 7, 8], [9, 10], [11, 12, 13], [14]])
    cfg = DecodeConfig(beam_size=3, nbest=3, max_len_b=6, alpha=0.0)
    shared = translate_batch(model, batch, cfg)
    memory, decoder_state = model.encode(batch.src, batch.src_lengths)
    copies = ModelState(decoder_state, memory).index_select(torch.arange(batch.size).repeat_interleave(3))
    assert copies.memory.values.size(0) == 3 * batch.size  # the old layout: a memory row per hypothesis
    max_lengths = max_output_lengths(batch.src_lengths, cfg)
    copied = beam_search(model_step(model), copies, max_lengths, beam_size=3, alpha=0.0, nbest=3)
    for ours, theirs in zip(shared, copied):
        assert [h.tokens for h in ours] == [h.tokens for h in theirs]
        assert [h.log_prob for h in ours] == pytest.approx([h.log_prob for h in theirs], abs=1e-4)
