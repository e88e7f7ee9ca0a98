"""Subword regularization: segmentations of a line sampled from a SentencePiece model, reproducibly.

SentencePiece samples by itself (`encode(..., enable_sampling=True)`), but not reproducibly: with
sentencepiece 0.2.3, `set_random_generator_seed(n)` gives the same samples within one process and
different ones in another process (and in each worker process forked before the first sample). A
resumed run, every torchrun rank and every worker process must draw the same segmentation for a given
(train.seed, epoch), so the sampling is done here, with numpy's generator, on the model's own pieces
and scores, the way SentencePiece samples:

- unigram, `nbest_size=-1`: forward-filtering backward-sampling over the lattice of pieces, each
  segmentation drawn with probability proportional to exp(alpha * its score);
- unigram, `nbest_size=n`: one of the n best segmentations, with probability proportional to
  exp(alpha * its score) (here the n best of each word, below);
- bpe: BPE-dropout: the merges are applied as SentencePiece applies them (the best-scored adjacent
  pair first), and each merge due is skipped with probability alpha.

Sampling works on the normalized line (`processor.normalize`: what SentencePiece segments). A piece
never crosses the start of a word (the "▁" that starts a word can only start a piece), so every word is
sampled on its own, and what a word's sampling needs (its lattice, its n best, its merges without
dropout) is computed once per distinct word. Unknown characters become the unknown id, a run of them
one unknown id, as in SentencePiece's own encoding.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sentencepiece as spm

UNK_PENALTY = 10.0  # SentencePiece's unigram model: an unknown character scores the lowest piece score minus this
CACHED_WORDS = 100_000  # distinct words whose preparation is kept (a few kB each); the first ones seen: the frequent


class Uniforms:
    """Uniform draws in [0, 1) from one generator, handed out in order (drawn in blocks, for speed)."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 14) -> None:
        self.rng, self.block = rng, block
        self.values: list[float] = []
        self.next = 0

    def peek(self, count: int) -> list[float]:
        """The next `count` draws, left to be taken."""
        if self.next + count > len(self.values):
            self.values = self.values[self.next :] + self.rng.random(max(self.block, count)).tolist()
            self.next = 0
        return self.values[self.next : self.next + count]

    def take(self, count: int) -> list[float]:
        values = self.peek(count)
        self.next += count
        return values


@dataclass
class _Choices:
    """Weighted choices: cumulative weights (increasing, the last is the total) and what each one picks."""

    cumulative: list[float]
    picks: list[tuple[int, int]]  # unigram lattice: (start position, piece id); n best: (index, 0)

    def pick(self, u: float) -> tuple[int, int]:
        return self.picks[min(bisect.bisect_right(self.cumulative, u * self.cumulative[-1]), len(self.picks) - 1)]


class SubwordSampler:
    """Sample segmentations of lines from one SentencePiece model (`model_type` unigram or bpe)."""

    def __init__(self, processor: spm.SentencePieceProcessor, model_type: str, alpha: float, nbest_size: int) -> None:
        self.sp, self.model_type, self.alpha, self.nbest_size = processor, model_type, alpha, nbest_size
        normal = [i for i in range(processor.get_piece_size()) if not _special(processor, i)]
        self.ids = {processor.id_to_piece(i): i for i in normal}  # piece -> id
        self.scores = {processor.id_to_piece(i): processor.get_score(i) for i in normal}
        self.unk = processor.unk_id()
        self.unk_score = min(self.scores.values(), default=0.0) - UNK_PENALTY
        self.longest = max(map(len, self.ids), default=1)
        self.words: dict[str, Any] = {}  # word -> what sampling it needs (computed once)

    def sample(self, lines: Sequence[str], uniforms: Uniforms) -> list[list[int]]:
        """A sampled segmentation (ids) of each line; the draws come from `uniforms`, in order."""
        out = []
        for line in self.sp.normalize(list(lines)):
            ids: list[int] = []
            for word in _words(line):
                ids.extend(self.sample_word(word, uniforms))
            out.append([i for i, previous in zip(ids, [-1, *ids]) if i != self.unk or previous != self.unk])
        return out

    def sample_word(self, word: str, uniforms: Uniforms) -> list[int]:
        if self.model_type == "bpe":
            return self._bpe_dropout(word, uniforms)
        if self.nbest_size > 0:
            segmentations, choices = self._prepared(word, self._nbest)
            return segmentations[choices.pick(uniforms.take(1)[0])[0]]
        steps = self._prepared(word, self._backward_choices)
        ids, end = [], len(word)
        while end > 0:
            end, piece = steps[end].pick(uniforms.take(1)[0])
            ids.append(piece)
        return ids[::-1]

    def _prepared(self, word: str, prepare: Callable[[str], Any]) -> Any:
        """What sampling `word` needs, from the cache, or prepared (and kept while the cache has room)."""
        prepared = self.words.get(word)
        if prepared is None:
            prepared = prepare(word)
            if len(self.words) < CACHED_WORDS:
                self.words[word] = prepared
        return prepared

    # ----------------------------------------------------------------------------------------- unigram
    def lattice(self, word: str) -> list[list[tuple[int, int, float]]]:
        """For each end position 1..len(word), the pieces that end there: (start, id, score); index 0 empty.
        A character that starts no one-character piece is an unknown piece, as in SentencePiece."""
        ends: list[list[tuple[int, int, float]]] = [[] for _ in range(len(word) + 1)]
        for start in range(len(word)):
            for end in range(start + 1, min(len(word), start + self.longest) + 1):
                piece = word[start:end]
                if piece in self.ids:
                    ends[end].append((start, self.ids[piece], self.scores[piece]))
            if word[start] not in self.ids:
                ends[start + 1].append((start, self.unk, self.unk_score))
        return ends

    def _backward_choices(self, word: str) -> list[_Choices]:
        """Forward filtering: the log-sum of exp(alpha * score) over the paths to each position; then, for
        each end position, the choice of the last piece, weighted by its share of that sum."""
        ends = self.lattice(word)
        forward = [0.0] * (len(word) + 1)
        for end in range(1, len(word) + 1):
            forward[end] = _logsumexp([forward[s] + self.alpha * score for s, _, score in ends[end]])
        steps = [_Choices([1.0], [(0, 0)])]
        for end in range(1, len(word) + 1):
            weights = [math.exp(forward[s] + self.alpha * score - forward[end]) for s, _, score in ends[end]]
            steps.append(_Choices(list(itertools.accumulate(weights)), [(s, i) for s, i, _ in ends[end]]))
        return steps

    def _nbest(self, word: str) -> tuple[list[list[int]], _Choices]:
        """The `nbest_size` best segmentations of `word` (by total score) and the choice among them."""
        ends = self.lattice(word)
        best: list[list[tuple[float, list[int]]]] = [[(0.0, [])]]  # per position: the n best (score, ids)
        for end in range(1, len(word) + 1):
            paths = [(score + s, ids + [i]) for start, i, s in ends[end] for score, ids in best[start]]
            best.append(heapq.nlargest(self.nbest_size, paths, key=lambda p: p[0]))
        scores = [score for score, _ in best[-1]]
        weights = itertools.accumulate(math.exp(self.alpha * (s - scores[0])) for s in scores)
        return [ids for _, ids in best[-1]], _Choices(list(weights), [(k, 0) for k in range(len(scores))])

    # --------------------------------------------------------------------------------------------- bpe
    def _bpe_dropout(self, word: str, uniforms: Uniforms) -> list[int]:
        """BPE-dropout. A draw decides each merge due; when none of the draws for the deterministic merges
        is under alpha (often, at the usual alpha=0.1), the result is the cached deterministic segmentation."""
        merges, ids = self._prepared(word, lambda w: self._bpe(w, None))
        if min(uniforms.peek(merges), default=1.0) >= self.alpha:  # merging would draw these and drop none
            uniforms.take(merges)
            return ids
        return self._bpe(word, uniforms)[1]

    def _bpe(self, word: str, uniforms: Uniforms | None) -> tuple[int, list[int]]:
        """SentencePiece's BPE: merge the best-scored adjacent pair (leftmost on a tie) until none is a
        piece; with `uniforms`, skip each merge due with probability alpha. Returns (merges done, ids)."""
        symbols = list(word)
        right = list(range(1, len(word) + 1))  # the next live symbol (len(word): none)
        left = list(range(-1, len(word) - 1))
        agenda: list[tuple[float, int, int, int]] = []  # (-score, left, right, length of the merged piece)

        def add(a: int, b: int) -> None:
            if a >= 0 and b < len(word) and symbols[a] + symbols[b] in self.scores:
                merged = symbols[a] + symbols[b]
                heapq.heappush(agenda, (-self.scores[merged], a, b, len(merged)))

        for a in range(len(word) - 1):
            add(a, a + 1)
        merges = 0
        while agenda:
            _, a, b, length = heapq.heappop(agenda)
            if not symbols[a] or not symbols[b] or len(symbols[a]) + len(symbols[b]) != length:
                continue  # one side has changed since the pair was queued
            if uniforms is not None and uniforms.take(1)[0] < self.alpha:
                continue  # dropped
            symbols[a], symbols[b] = symbols[a] + symbols[b], ""
            right[a] = right[b]
            if right[a] < len(word):
                left[right[a]] = a
            merges += 1
            add(left[a], a)
            add(a, right[a])
        return merges, [self.ids.get(s, self.unk) for s in symbols if s]


def _special(processor: spm.SentencePieceProcessor, i: int) -> bool:
    return processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i) or processor.is_byte(i)


def _words(line: str) -> list[str]:
    """A normalized line cut before each "▁" (the first word keeps what precedes the first "▁")."""
    head, *rest = line.split("\u2581")
    return ([head] if head else []) + ["\u2581" + word for word in rest]


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
