"""benchmarks/steering_benchmark.py: constraints drawn from the references, met, and the report."""

from __future__ import annotations

import json

import pytest

from .conftest import load_script
from .test_serve import tiny_run
from .tiny_models import corpus_lines

pytestmark = pytest.mark.bench


def test_constraints_are_reference_words_the_output_lacks_drawn_with_a_seed():
    script = load_script("steering_benchmark")
    refs, outs = ["the black dog runs home", "a cat"], ["the dog runs", "a cat"]
    drawn = script.draw_constraints(refs, outs, 2, seed=1)
    assert drawn == script.draw_constraints(refs, outs, 2, seed=1) and drawn[1] == []
    assert len(drawn[0]) == 2 and all(not script.holds(outs[0], p) and script.holds(refs[0], p) for p in drawn[0])
    assert script.first_third("a b c d e f g") == ("a b", "c d e f g")


def test_the_report_holds_every_constraint_and_prefix(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", cell="gru")
    src, ref = corpus_lines("test", 8)
    (tmp_path / "src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "ref").write_text("\n".join(ref) + "\n", encoding="utf-8")
    out = tmp_path / "steering.json"
    argv = [str(run), "--src", str(tmp_path / "src"), "--ref", str(tmp_path / "ref"), "--repeats", "1"]
    assert load_script("steering_benchmark").main([*argv, "--betas", "0,0.2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["met"] == r["constraints"] for r in report["constraints"]] == [True, True, True]
    assert report["constraints"][1]["constraints"] > 0
    assert report["prefixes"]["start_with_prefix"] == report["prefixes"]["sentences"] == 8
    assert [c["beta"] for c in report["coverage"]] == [0.0, 0.2]
    assert "| 2 |" in capsys.readouterr().out
