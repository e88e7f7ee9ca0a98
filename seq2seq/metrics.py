"""Corpus BLEU and chrF with sacrebleu, on detokenized, cased text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def bleu_and_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """sacrebleu's corpus BLEU (13a tokenisation, cased) and chrF against one reference per sentence."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return Scores(
        bleu=round(bleu.corpus_score(hyps, refs).score, 2),
        chrf=round(chrf.corpus_score(hyps, refs).score, 2),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )
