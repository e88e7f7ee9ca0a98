"""Lexical shortlists: decode over the target words a sentence's source makes likely, not the whole vocabulary.

Most of a search step's time goes into the output layer: a (rows, readout) x (readout, vocab) product,
then log-softmax and top-k over every vocabulary entry, although a sentence's translation uses a few
dozen of them. A lexical shortlist (as in Marian) keeps, for every source id, the `per_source` target ids
that co-occur with it most strongly in a parallel corpus, plus the `frequent` most frequent target ids.
For each sentence, the search then runs over the candidates of its source tokens
(`LexicalShortlist.candidates`, a few hundred of 5,000 on Multi30k): the output layer is cut to each
sentence's rows once per batch, and every step computes, normalizes and ranks only those scores. The
probabilities are renormalized over the candidates, so results can differ from a full-vocabulary search;
docs/benchmarks.md measures speed and BLEU.

Co-occurrence strength is the Dice coefficient over sentence pairs,

    dice(s, t) = 2 * pairs holding both s and t / (pairs holding s + pairs holding t),

which, unlike p(t | s), does not favour the frequent target words (those are in the frequent list anyway).

A shortlist is built from a training corpus and stored in the checkpoint (key "shortlist") by the
command `python -m seq2seq.shortlist`, then used with `translate --shortlist` / `evaluate --shortlist`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

PER_SOURCE, FREQUENT = 20, 300  # the defaults (tuned on Multi30k val): candidates per source id, frequent ids


@dataclass
class Candidates:
    """A batch's candidate target ids: the ones every sentence has, then each sentence's own."""

    shared: Tensor  # (N,) ascending: the frequent ids, EOS and UNK
    own: Tensor  # (batch, C) each row ascending: a sentence's other candidates, then padding
    valid: Tensor  # (batch, C) True at a sentence's own candidates, False at padding (C: the most any has)

    @property
    def ids(self) -> Tensor:
        """(batch, N + C): every sentence's candidate ids in the order of the search's columns."""
        return torch.cat([self.shared.expand(self.own.size(0), -1), self.own], dim=1)


@dataclass
class LexicalShortlist:
    """Target candidates per source id (`translations`, (src_vocab, per_source)) and for every batch (`frequent`)."""

    translations: Tensor  # (src_vocab, per_source) long: target ids, strongest first
    frequent: Tensor  # (frequent,) long: the most frequent target ids

    def candidates(
        self, src: Tensor, tgt_vocab_size: int, required: Sequence[Sequence[int]] | None = None
    ) -> Candidates:
        """src (batch, src_len), PAD after each sentence -> every sentence's candidate target ids.

        A sentence's candidates: the frequent ids, EOS and UNK (`shared`, the same for every sentence), and
        the translations of its source ids that are not among them (`own`), and the ids of `required[i]`
        (a forced prefix's and required phrases' pieces). Never PAD or BOS (which are never generated).
        """
        shared = torch.zeros(tgt_vocab_size, dtype=torch.bool, device=src.device)  # (tgt_vocab,)
        shared[self.frequent.to(src.device)] = True
        shared[[EOS_ID, UNK_ID]] = True
        shared[[PAD_ID, BOS_ID]] = False
        batch = src.size(0)
        member = torch.zeros(batch, tgt_vocab_size, dtype=torch.bool, device=src.device)  # (batch, tgt_vocab)
        member.scatter_(1, self.translations.to(src.device)[src].view(batch, -1), True)  # PAD's row: EOS only
        for i, ids in enumerate(required or ()):
            if ids:
                member[i, torch.tensor(list(ids), dtype=torch.long, device=src.device)] = True
        member &= ~shared
        member[:, [PAD_ID, BOS_ID]] = False
        counts = member.sum(dim=1)  # (batch,)
        own = member.to(torch.int8).sort(dim=1, descending=True, stable=True).indices[:, : int(counts.max())]
        valid = torch.arange(own.size(1), device=src.device) < counts.unsqueeze(1)  # (batch, C)
        return Candidates(shared.nonzero().squeeze(1), own, valid)

    def to_dict(self) -> dict[str, Any]:
        """Tensors only: what the checkpoint stores under "shortlist"."""
        return {"translations": self.translations.to(torch.int32), "frequent": self.frequent.to(torch.int32)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LexicalShortlist:
        return cls(state["translations"].long(), state["frequent"].long())


def build_shortlist(
    src_ids: Sequence[Sequence[int]],
    tgt_ids: Sequence[Sequence[int]],
    src_vocab_size: int,
    tgt_vocab_size: int,
    per_source: int = PER_SOURCE,
    frequent: int = FREQUENT,
) -> LexicalShortlist:
    """The shortlist of a parallel corpus given as id sequences (line-aligned; no BOS, EOS or PAD needed).

    A source id seen nowhere (or with fewer co-occurring target ids than `per_source`) is padded with EOS,
    which every candidate set holds anyway.
    """
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"{len(src_ids)} source sentences but {len(tgt_ids)} target sentences")
    if per_source < 1 or frequent < 0:
        raise ValueError(f"per_source must be at least 1 and frequent at least 0, got {per_source}, {frequent}")
    both = np.zeros(src_vocab_size * tgt_vocab_size, dtype=np.int64)  # pairs holding s and t, flattened (s, t)
    src_count = np.zeros(src_vocab_size, dtype=np.int64)  # pairs holding s
    tgt_count = np.zeros(tgt_vocab_size, dtype=np.int64)  # pairs holding t
    tgt_tokens = np.zeros(tgt_vocab_size, dtype=np.int64)  # occurrences of t: the frequent list
    chunk: list[np.ndarray] = []
    for src, tgt in zip(src_ids, tgt_ids):
        s, t = np.unique(np.asarray(src, dtype=np.int64)), np.unique(np.asarray(tgt, dtype=np.int64))
        src_count[s] += 1
        tgt_count[t] += 1
        np.add.at(tgt_tokens, np.asarray(tgt, dtype=np.int64), 1)
        chunk.append((s[:, None] * tgt_vocab_size + t[None, :]).ravel())
        if len(chunk) >= 4096:  # bincount in chunks: one call per sentence would be slow
            both += np.bincount(np.concatenate(chunk), minlength=both.size)
            chunk = []
    if chunk:
        both += np.bincount(np.concatenate(chunk), minlength=both.size)
    pairs = torch.from_numpy(both).view(src_vocab_size, tgt_vocab_size).float()
    dice = 2 * pairs / (torch.from_numpy(src_count).float()[:, None] + torch.from_numpy(tgt_count).float()[None, :])
    dice = dice.nan_to_num(0.0)  # (src_vocab, tgt_vocab); 0/0 where neither occurs
    dice[:, [PAD_ID, BOS_ID]] = 0.0
    scores, translations = dice.topk(min(per_source, tgt_vocab_size), dim=1)  # (src_vocab, per_source)
    translations[scores <= 0] = EOS_ID
    tgt_tokens[[PAD_ID, BOS_ID]] = 0
    top = np.argsort(-tgt_tokens, kind="stable")[:frequent]
    top = top[tgt_tokens[top] > 0]
    return LexicalShortlist(translations, torch.from_numpy(top.copy()).long())
