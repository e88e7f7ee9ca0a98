import random

from seq2seq.data.batches import make_batch, sentence_batches, token_batches
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID


def test_teacher_forcing_shift_lives_in_the_batch():
    batch = make_batch([[10, 11, 12], [13]], [[20, 21], [22, 23, 24]])
    assert batch.src.tolist() == [[10, 11, 12, EOS_ID], [13, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [4, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 20, 21, PAD_ID], [BOS_ID, 22, 23, 24]]
    assert batch.tgt_out.tolist() == [[20, 21, EOS_ID, PAD_ID], [22, 23, 24, EOS_ID]]
    assert batch.num_tgt_tokens == 7


def test_token_batches_cover_every_sentence_once_within_budget():
    rng = random.Random(0)
    src = [rng.randint(1, 40) for _ in range(500)]
    tgt = [rng.randint(1, 40) for _ in range(500)]
    batches = token_batches(src, tgt, batch_tokens=200, rng=random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        longest = max(max(src[i], tgt[i]) + 1 for i in b)
        assert len(b) == 1 or len(b) * longest <= 200
    # bucketing: little padding compared with random batches of the same sizes
    padded = sum(len(b) * max(src[i] + 1 for i in b) for b in batches)
    assert padded < 1.2 * sum(s + 1 for s in src)


def test_token_batches_shuffle_depends_on_the_seed_only():
    src = list(range(1, 100))
    a = token_batches(src, src, 50, random.Random(3))
    b = token_batches(src, src, 50, random.Random(3))
    c = token_batches(src, src, 50, random.Random(4))
    assert [x.tolist() for x in a] == [x.tolist() for x in b] != [x.tolist() for x in c]


def test_sentence_batches_group_by_length():
    lengths = [5, 1, 3, 2, 4]
    assert sentence_batches(lengths, 2) == [[1, 3], [2, 4], [0]]
