"""Hard alignments from attention weights, as `i-j` pairs: source position i - output position j, 0-based.

`hard_alignment` links every output piece to the source piece it attends to most; `word_alignment`
lifts those links to words, where a word is what SentencePiece's "▁" word-start marker begins (the
words of the detokenized text). Pure functions of weights and pieces; `inference.attention_for` computes
the weights and `seq2seq.translate --alignment` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

WORD_START = "\u2581"  # "▁": SentencePiece's mark of a piece that begins a word
NO_TEXT = {"<unk>", "<s>", "</s>", "<pad>"}  # pieces of special ids: the detokenizer prints nothing for them


def hard_alignment(weights: Tensor) -> list[tuple[int, int]]:
    """(source piece, output piece) links, one per output piece, ordered by output piece.

    weights: (output pieces + EOS, source pieces + EOS), as `inference.attention_for` returns them. The
    EOS row and column are left out: each output piece links to the argmax over the real source pieces
    (as fairseq's `extract_hard_alignment` does), and the EOS output gets no link.
    """
    real = weights[:-1, :-1]  # (output pieces, source pieces)
    if real.size(0) == 0 or real.size(1) == 0:
        return []
    return [(i, j) for j, i in enumerate(real.argmax(dim=1).tolist())]


def word_indices(pieces: Sequence[str]) -> list[int]:
    """The word of every piece: a piece with text after a "▁" (its own or a bare "▁" piece before it)
    begins the next word. Pieces without text (a bare "▁", `<unk>`) join the word that follows them."""
    words: list[int] = []
    index, pending = -1, True  # pending: the next piece with text begins a word
    for piece in pieces:
        pending = pending or piece.startswith(WORD_START)
        has_text = piece not in NO_TEXT and piece != WORD_START
        if has_text and pending:
            index, pending = index + 1, False
        words.append(index if has_text else -1)
    following = max(index, 0)  # textless pieces take the next word's index; at the end, the last word's
    for k in range(len(words) - 1, -1, -1):
        if words[k] < 0:
            words[k] = following
        following = words[k]
    return words


def word_alignment(
    links: Sequence[tuple[int, int]], src_pieces: Sequence[str], out_pieces: Sequence[str]
) -> list[tuple[int, int]]:
    """Piece links lifted to (source word, output word) links, without repeats, ordered by output word."""
    src_words, out_words = word_indices(src_pieces), word_indices(out_pieces)
    return sorted({(src_words[i], out_words[j]) for i, j in links}, key=lambda link: (link[1], link[0]))


def format_alignment(links: Sequence[tuple[int, int]]) -> str:
    """`0-0 1-2 2-1`: source index - output index, space-separated."""
    return " ".join(f"{i}-{j}" for i, j in links)
