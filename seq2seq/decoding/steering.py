"""Steering the search: a forced prefix and required phrases per sentence (`Steering`), and lexically
constrained beam search, whose every output holds the phrases its sentence requires.

Prefixes are forced by the step function itself (`model_search.ModelState.prefix`), so every search honours them.

Dynamic beam allocation (Post & Vilar 2018): a hypothesis counts the constraint tokens it has met, and the
beam of k is shared out among "banks", one per count (0 .. all of the sentence's constraint tokens), so that
hypotheses that have placed more of the constraints are not crowded out by more probable ones that have
placed fewer. At each step a sentence's candidates are the k best continuations of its beam (as in plain
beam search), the best continuation of each hypothesis, and every continuation that advances a constraint
(the next piece of a phrase in progress, or the first piece of a phrase not yet met); the banks then take
turns picking their best candidate, the bank of most tokens met first, until the beam is full.

Phrases are matched in subword pieces: a phrase in progress whose next piece diverges is abandoned (its
pieces no longer count), and a phrase counts as met only on word boundaries: the piece after its last one
must start a new word (or be punctuation, or the end), else the phrase is undone ("dog" is not met by
"dogs"). A hypothesis may end (EOS) only when every phrase is met. The model's scores are computed for the
whole beam at once by the shared step function, so ensembles, int8 models and shortlists (whose candidates
hold the constraint pieces) work as in plain search; the bookkeeping of each sentence's candidates is plain
Python, a few dozen candidates per sentence and step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from seq2seq.decoding.search import Hypothesis, StepFn, scored, token_ids
from seq2seq.vocab import BOS_ID, EOS_ID

Phrase = tuple[int, ...]  # a required phrase's target ids
MAX_PREFIX_TOKENS = 200  # a longer forced prefix is refused
MAX_PHRASES = 32  # required phrases per sentence


class SteeringError(ValueError):
    """A prefix or required phrase that cannot be honoured: `problem`, at input line `line` (the message
    says "line N: problem"; the server names the request's entry instead)."""

    def __init__(self, line: int, problem: str, kind: str = "constraints") -> None:
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem, self.kind = line, problem, kind  # kind: "constraints" or "prefix"


def parse_constraints_line(line: str) -> list[str]:
    """A line of a constraints file: phrases separated by tabs (empty ones ignored; an empty line: none)."""
    return [phrase.strip() for phrase in line.rstrip("\r\n").split("\t") if phrase.strip()]


def parse_request_line(line: str, number: int) -> tuple[str, str | None, list[str]]:
    """A JSONL input line, {"src": ..., "constraints"?: [phrases], "prefix"?: text or null} -> (source,
    prefix, phrases); `SteeringError` naming line `number` for anything else."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SteeringError(number, f"not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(record, dict) or not isinstance(record.get("src"), str):
        raise SteeringError(number, f'expected a JSON object with a string "src", got {line.strip()[:60]!r}')
    unknown = sorted(set(record) - {"src", "constraints", "prefix"})
    if unknown:
        raise SteeringError(number, f"unknown field(s) {unknown}; the fields are src, constraints, prefix")
    phrases, prefix = record.get("constraints") or [], record.get("prefix")
    if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
        raise SteeringError(number, '"constraints" must be a list of strings')
    if prefix is not None and not isinstance(prefix, str):
        raise SteeringError(number, '"prefix" must be a string or null')
    return record["src"], prefix, phrases


@dataclass
class Steering:
    """What a batch's outputs must hold, per sentence (batch order), as target ids: a prefix they start with
    ([] for none) and phrases they contain ([] for none)."""

    prefixes: list[list[int]]
    constraints: list[list[Phrase]]
    continues_word: Sequence[bool]  # per target id (`Tokenizer.continues_word`)

    @property
    def has_prefixes(self) -> bool:
        return any(self.prefixes)

    @property
    def has_constraints(self) -> bool:
        return any(self.constraints)

    def split(self, batches: Sequence[Sequence[int]]) -> list[list[int]]:
        """Each batch (sentence indices) split in two: the sentences with required phrases, and the others
        (which plain search decodes, exactly as without steering)."""
        parts = [
            [[r for r in rows if bool(self.constraints[r]) == phrased] for phrased in (False, True)] for rows in batches
        ]
        return [part for pair in parts for part in pair if part]

    def select(self, rows: Sequence[int]) -> Steering:
        """The sentences `rows`, in that order (a batch of them)."""
        return Steering([self.prefixes[r] for r in rows], [self.constraints[r] for r in rows], self.continues_word)

    def repeated(self, times: int) -> Steering:
        """Each sentence `times` times in a row (sampling's n-best: one row per sample)."""
        return Steering(
            [p for p in self.prefixes for _ in range(times)],
            [c for c in self.constraints for _ in range(times)],
            self.continues_word,
        )

    def lengths(self) -> list[int]:
        """Per sentence, the tokens its prefix and phrases hold: the room added to its max output length."""
        return [len(p) + sum(map(len, c)) for p, c in zip(self.prefixes, self.constraints)]

    def prefix_table(self, device: torch.device) -> Tensor:
        """(sentences, longest prefix) ids, -1 after each prefix."""
        longest = max(len(p) for p in self.prefixes)
        table = torch.full((len(self.prefixes), longest), -1, dtype=torch.long)
        for i, prefix in enumerate(self.prefixes):
            table[i, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        return table.to(device)

    def required_ids(self) -> list[list[int]]:
        """Per sentence, every id its prefix and phrases use (a shortlist must offer them)."""
        return [
            sorted({*prefix, *(i for phrase in phrases for i in phrase)})
            for prefix, phrases in zip(self.prefixes, self.constraints)
        ]

    def sentence_constraints(self) -> list[SentenceConstraints]:
        return [SentenceConstraints(list(phrases), self.continues_word) for phrases in self.constraints]


@dataclass(frozen=True)
class Progress:
    """How far one hypothesis is through its sentence's phrases."""

    met: tuple[bool, ...]  # per phrase
    phrase: int = -1  # the phrase in progress (-1: none)
    position: int = 0  # pieces of it written so far
    completed: int = -1  # the phrase completed by the last piece, undone if the next piece continues the word

    def tokens_met(self, lengths: Sequence[int]) -> int:
        """Its bank: the pieces of met phrases, plus those written of the phrase in progress."""
        return sum(n for n, done in zip(lengths, self.met) if done) + self.position

    @property
    def all_met(self) -> bool:
        return all(self.met)


@dataclass
class SentenceConstraints:
    """One sentence's required phrases and the rule for word boundaries."""

    phrases: list[Phrase]
    continues_word: Sequence[bool]  # per target id: the piece goes on with the word before it
    lengths: list[int] = field(init=False)
    starts: dict[int, list[int]] = field(init=False)  # first piece -> the phrases that start with it
    transitions: dict[tuple[Progress, int], Progress] = field(init=False)  # `after`'s answers, kept

    def __post_init__(self) -> None:
        self.transitions = {}
        self.lengths = [len(p) for p in self.phrases]
        self.starts = {}
        for j, phrase in enumerate(self.phrases):
            self.starts.setdefault(phrase[0], []).append(j)

    def start(self) -> Progress:
        return Progress(tuple(False for _ in self.phrases))

    def advancing(self, progress: Progress) -> list[int]:
        """The tokens that advance a phrase from `progress`: the next piece of the one in progress, or the first
        piece of each phrase not met."""
        if progress.phrase >= 0:
            return [self.phrases[progress.phrase][progress.position]]
        return list({self.phrases[j][0] for j, done in enumerate(progress.met) if not done})

    def after(self, progress: Progress, token: int) -> Progress:
        """The progress after writing `token`."""
        known = self.transitions.get((progress, token))
        if known is None:
            known = self.transitions[(progress, token)] = self._after(progress, token)
        return known

    def _after(self, progress: Progress, token: int) -> Progress:
        met = progress.met
        if progress.completed >= 0 and token < len(self.continues_word) and self.continues_word[token]:
            met = _set(met, progress.completed, False)  # "dog" + "s": not the phrase "dog" after all
        if progress.phrase >= 0:
            phrase = self.phrases[progress.phrase]
            if token == phrase[progress.position] and not met[progress.phrase]:
                position = progress.position + 1
                if position == len(phrase):
                    return Progress(_set(met, progress.phrase, True), completed=progress.phrase)
                return Progress(met, progress.phrase, position)
            # diverged: the phrase in progress is abandoned; the token may start another one
        for j in self.starts.get(token, ()):
            if not met[j]:
                if len(self.phrases[j]) == 1:
                    return Progress(_set(met, j, True), completed=j)
                return Progress(met, j, 1)
        return Progress(met)


def _set(flags: tuple[bool, ...], index: int, value: bool) -> tuple[bool, ...]:
    return flags[:index] + (value,) + flags[index + 1 :]


def allocate_beam(
    banks: dict[int, list[tuple[float, int, int, Progress]]], k: int
) -> list[tuple[float, int, int, Progress]]:
    """Dynamic beam allocation: the banks (tokens met -> candidates) take turns, most tokens met first, each
    picking its best remaining candidate, until k are picked or none is left."""
    queues = [sorted(cands, key=lambda c: c[0], reverse=True) for _, cands in sorted(banks.items(), reverse=True)]
    picked: list[tuple[float, int, int, Progress]] = []
    depth = 0
    while len(picked) < k and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(picked) < k:
                picked.append(queue[depth])
        depth += 1
    return picked


@torch.no_grad()
def constrained_beam_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    beam_size: int,
    constraints: Sequence[SentenceConstraints],
    alpha: float = 0.0,
    nbest: int = 1,
    columns: Sequence[dict[int, int]] | None = None,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
) -> list[list[Hypothesis]]:
    """Beam search in which every sentence's outputs hold its phrases (`constraints`, one per sentence);
    `state` as for `search.beam_search` (`beam_size` rows per sentence, sentence-major). `columns`: with a
    shortlist, each sentence's target id -> its column of the step's log-probabilities. Returns the `nbest`
    best hypotheses per sentence, best first, those that meet every phrase before any that do not (which
    happens only when the max length cuts a sentence short)."""
    batch, k = max_lengths.size(0), beam_size
    device = max_lengths.device
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")
    history = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)  # (live*beam, t+1)
    progress = [[c.start() for _ in range(k)] for c in constraints]  # per live sentence, per beam
    word_pieces = torch.tensor(list(constraints[0].continues_word), dtype=torch.bool, device=device)  # (V,)
    live = list(range(batch))
    ended: list[list[tuple[bool, Hypothesis]]] = [[] for _ in range(batch)]  # (all phrases met, hypothesis)
    limits = max_lengths.tolist()
    beam_rows = torch.arange(k, device=device)
    for t in range(int(max_lengths.max())):
        n = len(live)
        log_probs, state = step(history[:, -1], state)  # (live*beam, V)
        vocab = log_probs.size(1)
        candidates = scores.unsqueeze(2) + log_probs.view(n, k, vocab)  # (live, beam, V)
        unmet = torch.tensor([[not p.all_met for p in beams] for beams in progress], device=device)  # (live, beam)
        if columns is None:  # EOS only once every phrase is met
            candidates[:, :, eos] = candidates[:, :, eos].masked_fill(unmet, float("-inf"))
        else:
            for i, b in enumerate(live):
                c = columns[b][eos]
                candidates[i, :, c] = candidates[i, :, c].masked_fill(unmet[i], float("-inf"))
        top_scores, top_index = candidates.view(n, -1).topk(k, dim=1)  # (live, beam)
        best_scores, best_column = candidates.max(dim=2)  # (live, beam) each hypothesis' best continuation
        # ... and its best that starts a new word (or ends): a phrase it has just completed stays met
        continues = word_pieces if getattr(state, "vocab", None) is None else word_pieces[state.vocab].unsqueeze(1)
        boundary_scores, boundary_column = candidates.masked_fill(continues, float("-inf")).max(dim=2)
        # the continuations that advance a phrase, gathered in one call: (sentence, beam, column) triples
        wanted = [
            (i, j, _column(columns, b, token))
            for i, b in enumerate(live)
            for j, p in enumerate(progress[i])
            for token in constraints[b].advancing(p)
        ]
        wanted = [(i, j, c) for i, j, c in wanted if c is not None]
        wanted_scores = (
            candidates[[w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]].tolist()
            if wanted
            else []
        )
        top_scores_l, top_index_l = top_scores.tolist(), top_index.tolist()
        best_scores_l, best_column_l = best_scores.tolist(), best_column.tolist()
        boundary_scores_l, boundary_column_l = boundary_scores.tolist(), boundary_column.tolist()
        ids = state.vocab.tolist() if getattr(state, "vocab", None) is not None else None  # (live, C) or None
        by_sentence: list[dict[tuple[int, int], float]] = [{} for _ in live]
        for i in range(n):
            for s, index in zip(top_scores_l[i], top_index_l[i]):
                by_sentence[i][(index // vocab, index % vocab)] = s
            for j in range(k):
                by_sentence[i][(j, best_column_l[i][j])] = best_scores_l[i][j]
                by_sentence[i][(j, boundary_column_l[i][j])] = boundary_scores_l[i][j]
        for (i, j, c), s in zip(wanted, wanted_scores):
            by_sentence[i][(j, c)] = s
        chosen_rows, chosen_columns, chosen_scores, chosen_progress = [], [], [], []
        going_on = []
        for i, b in enumerate(live):
            cons = constraints[b]
            banks: dict[int, list[tuple[float, int, int, Progress]]] = {}
            for (j, c), s in by_sentence[i].items():
                if s == float("-inf"):
                    continue
                token = c if ids is None else ids[i][c]
                if token == eos:  # every phrase met (EOS is masked otherwise): the hypothesis ends
                    row = history[i * k + j, 1:].tolist()
                    ended[b].append((True, scored(row, s, alpha, eos_counted=True)))
                    continue
                after = cons.after(progress[i][j], token)
                banks.setdefault(after.tokens_met(cons.lengths), []).append((s, j, c, after))
            picked = allocate_beam(banks, k)
            while len(picked) < k:  # fewer candidates than beams: empty rows that never win
                picked.append((float("-inf"), 0, 0, progress[i][0]))
            for s, j, c, after in picked:
                chosen_rows.append(i * k + j)
                chosen_columns.append(c)
                chosen_scores.append(s)
                chosen_progress.append(after)
        beams = torch.tensor(chosen_rows, device=device)
        column_t = torch.tensor(chosen_columns, device=device).view(n, k)
        tokens = token_ids(state, column_t)  # (live, beam)
        scores = torch.tensor(chosen_scores, device=device).view(n, k)
        history = torch.cat([history.index_select(0, beams), tokens.view(-1, 1)], dim=1)
        progress = [chosen_progress[i * k : (i + 1) * k] for i in range(n)]
        scores_l = scores.tolist()
        for i, b in enumerate(live):
            if t + 1 >= limits[b]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    if scores_l[i][j] != float("-inf"):
                        row = history[i * k + j, 1:].tolist()
                        hypothesis = scored(row, scores_l[i][j], alpha, eos_counted=False)
                        ended[b].append((progress[i][j].all_met, hypothesis))
            elif sum(met for met, _ in ended[b]) < k:
                going_on.append(i)
        if not going_on:
            break
        if len(going_on) == n:
            state = state.reorder(beams)
        else:
            keep = torch.tensor(going_on, device=device)
            rows = (keep.unsqueeze(1) * k + beam_rows).view(-1)
            state = state.index_select(beams.index_select(0, rows))
            history, scores = history.index_select(0, rows), scores.index_select(0, keep)
            progress = [progress[i] for i in going_on]
            live = [live[i] for i in going_on]
    return [[h for _, h in sorted(hyps, key=lambda mh: (mh[0], mh[1].score), reverse=True)[:nbest]] for hyps in ended]


def _column(columns: Sequence[dict[int, int]] | None, sentence: int, token: int) -> int | None:
    """The column of `token` in a sentence's log-probabilities (None: not among its shortlist candidates)."""
    if columns is None:
        return token
    return columns[sentence].get(token)
