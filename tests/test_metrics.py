"""Corpus scores: BLEU, chrF and TER (sacrebleu), in evaluate's report and a run's validation and test results."""

from __future__ import annotations

import json

from sacrebleu.metrics import TER

from seq2seq import evaluate
from seq2seq.metrics import corpus_scores

from .test_cli_errors import run_dir  # noqa: F401  (the module's trained run, a fixture)


def test_ter_is_sacrebleus_and_can_be_left_out():
    hyps, refs = ["a cat sat on the mat", "hello there"], ["the cat sat on the mat", "hello there world"]
    scores = corpus_scores(hyps, refs)
    assert scores.ter == round(TER().corpus_score(hyps, [refs]).score, 2) and scores.ter > 0
    assert scores.ter_signature is not None and scores.ter_signature.startswith("nrefs:1")
    assert corpus_scores(refs, refs).ter == 0.0
    assert corpus_scores(hyps, refs, ter=False).ter is None


def test_evaluate_reports_ter_beside_bleu_and_chrf(run_dir, capsys):  # noqa: F811
    args = [str(run_dir), "--src", str(run_dir / "src.de"), "--ref", str(run_dir / "ref.en"), "--device", "cpu"]
    assert evaluate.main([*args, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {"bleu", "chrf", "ter", "ter_signature"} <= set(scores)
    assert evaluate.main(args) == 0
    assert "TER = " in capsys.readouterr().out
