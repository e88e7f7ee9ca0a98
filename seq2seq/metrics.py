"""Corpus BLEU, chrF and TER with sacrebleu, on detokenized, cased text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF, TER


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    ter: float | None = None  # translation edit rate (lower is better); None when not computed
    ter_signature: str | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], ter: bool = True) -> Scores:
    """sacrebleu's corpus BLEU (13a tokenisation, cased), chrF and (unless `ter=False`, the slowest of the
    three) TER against one reference per sentence."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    scores = Scores(
        bleu=round(bleu.corpus_score(hyps, refs).score, 2),
        chrf=round(chrf.corpus_score(hyps, refs).score, 2),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )
    if ter:
        metric = TER()
        scores.ter = round(metric.corpus_score(hyps, refs).score, 2)
        scores.ter_signature = str(metric.get_signature())
    return scores
