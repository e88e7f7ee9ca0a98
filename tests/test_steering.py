"""Steerable decoding: forced prefixes (every search) and required phrases (constrained beam search), with
ensembles, int8 and shortlists; the phrase bookkeeping; bad requests named by line."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.config import DecodeConfig
from seq2seq.data.tokenizer import continues_word_table
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.lexicon import build_shortlist
from seq2seq.decoding.steering import SentenceConstraints, SteeringError, allocate_beam
from seq2seq.model.quantize import quantize_int8

from .tiny_models import corpus_lines, tiny_model, tiny_tokenizer

CPU = torch.device("cpu")
SHORT = {"max_len_a": 0.5, "max_len_b": 4}  # untrained models write to the max length: keep it short
SOURCES = corpus_lines("test", 6)[0]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(joint=False)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(tok, seed=3)[0]


def words(tok, count: int = 40) -> list[str]:
    """Target words the vocabulary writes as one piece each, for phrases."""
    found = []
    for i in range(tok.tgt_vocab_size):
        piece = tok.tgt.id_to_piece(i)
        if piece.startswith("\u2581") and len(piece) > 2 and piece[1:].isalpha():
            found.append(piece[1:])
    return found[:count]


def holds(text: str, phrase: str) -> bool:
    """`phrase` in `text` as written and on word boundaries."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


# ------------------------------------------------------------------------------------------- bookkeeping


def test_a_phrase_advances_piece_by_piece_and_is_abandoned_when_the_next_piece_diverges():
    cons = SentenceConstraints([(5, 6, 7), (9,)], continues_word=[False] * 20)
    p = cons.start()
    assert sorted(cons.advancing(p)) == [5, 9] and p.tokens_met(cons.lengths) == 0
    p = cons.after(p, 5)
    assert cons.advancing(p) == [6] and p.tokens_met(cons.lengths) == 1
    p = cons.after(p, 8)  # diverged: abandoned, nothing counts
    assert p.tokens_met(cons.lengths) == 0 and p.phrase == -1
    for token in (5, 6, 7, 9):
        p = cons.after(p, token)
    assert p.all_met and p.tokens_met(cons.lengths) == 4


def test_a_phrase_is_met_only_on_a_word_boundary():
    continues = [False] * 10
    continues[8] = True  # piece 8 continues the word before it ("s" after "dog")
    cons = SentenceConstraints([(5,)], continues)
    met = cons.after(cons.start(), 5)
    assert met.all_met
    assert not cons.after(met, 8).all_met  # "dogs": not "dog"
    assert cons.after(met, 6).all_met  # a new word after it
    assert continues_word_table(["\u2581dog", "s", ".", "\u2581", "1"]) == [False, True, False, False, True]


def test_banks_take_turns_most_tokens_met_first():
    banks = {0: [(-1.0, 0, 1, None), (-2.0, 0, 2, None), (-3.0, 0, 3, None)], 2: [(-9.0, 1, 4, None)]}
    picked = allocate_beam(banks, 3)  # type: ignore[arg-type]
    assert [c[2] for c in picked] == [4, 1, 2]  # bank 2's only candidate, then bank 0's best two


# ------------------------------------------------------------------------------------------- prefixes


@pytest.mark.parametrize("search", [{"beam_size": 1}, {"beam_size": 4}, {"sampling": True, "nbest": 2}])
def test_every_output_starts_with_its_forced_prefix(tok, model, search):
    cfg = DecodeConfig(**SHORT, **search)
    prefixes = ["A man", None, "Two dogs are", "", "The", "x"]
    hyps = translate_sentences(model, tok, SOURCES, cfg, CPU, prefixes=prefixes)
    for prefix, line in zip(prefixes, hyps):
        wanted = tok.encode_tgt([prefix])[0] if prefix else []
        for hyp in line:
            assert hyp.tokens[: len(wanted)] == wanted
            assert tok.decode_tgt([hyp.tokens])[0].startswith(tok.decode_tgt([wanted])[0])
    free = translate_sentences(model, tok, SOURCES[1:2], cfg, CPU)
    assert [h.tokens for h in hyps[1]] == [h.tokens for h in free[0]]  # no prefix: as without steering


# ------------------------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("beam", [1, 5])
def test_every_output_holds_its_required_phrases(tok, model, beam):
    vocab = words(tok)
    constraints = [[vocab[0]], [vocab[1], vocab[2]], [], [f"{vocab[3]} {vocab[4]}"], [vocab[5]], [vocab[6]]]
    cfg = DecodeConfig(beam_size=beam, nbest=beam, **SHORT)
    hyps = translate_sentences(model, tok, SOURCES, cfg, CPU, constraints=constraints)
    for phrases, line in zip(constraints, hyps):
        assert len(line) == beam
        met = [all(holds(tok.decode_tgt([h.tokens])[0], p) for p in phrases) for h in line]
        assert met[0] and met == sorted(met, reverse=True), (tok.decode_tgt([line[0].tokens]), phrases)
    free = translate_sentences(model, tok, SOURCES[2:3], cfg, CPU)
    assert hyps[2][0].tokens == free[0][0].tokens  # no phrases: the plain search's best


def test_prefixes_and_phrases_together(tok, model):
    vocab = words(tok)
    hyps = translate_sentences(
        model,
        tok,
        SOURCES[:2],
        DecodeConfig(beam_size=3, **SHORT),
        CPU,
        prefixes=["A", "Two"],
        constraints=[[vocab[7]], []],
    )
    first = tok.decode_tgt([hyps[0][0].tokens])[0]
    assert first.startswith("A") and holds(first, vocab[7])


def members(tok, quantized: bool = False):
    models = [tiny_model(tok, seed=s)[0] for s in (3, 4)]
    return [quantize_int8(m) for m in models] if quantized else models


@pytest.mark.parametrize("kind", ["ensemble", "int8", "shortlist"])
def test_constraints_with_ensembles_int8_and_shortlists(tok, model, kind):
    vocab = words(tok)
    constraints = [[vocab[8]], [vocab[9], vocab[10]], [vocab[11]]]
    decoder, shortlist = model, None
    if kind == "ensemble":
        decoder = Ensemble(members(tok))
    elif kind == "int8":
        decoder = quantize_int8(tiny_model(tok, seed=3)[0])
    else:
        src, tgt = corpus_lines("train", 300)
        shortlist = build_shortlist(
            tok.encode_src(src), tok.encode_tgt(tgt), tok.src_vocab_size, tok.tgt_vocab_size, per_source=3, frequent=5
        )
    hyps = translate_sentences(
        decoder, tok, SOURCES[:3], DecodeConfig(beam_size=4, **SHORT), CPU, shortlist=shortlist, constraints=constraints
    )
    for phrases, line in zip(constraints, hyps):
        text = tok.decode_tgt([line[0].tokens])[0]
        assert all(holds(text, phrase) for phrase in phrases), (kind, text, phrases)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_phrases_from_the_vocabulary_always_appear(tok, model, data):
    """Any phrases of target words, one to three per sentence, a word or two each, appear in every output."""
    vocab = words(tok)
    phrase = st.lists(st.sampled_from(vocab), min_size=1, max_size=2).map(" ".join)
    constraints = data.draw(st.lists(st.lists(phrase, min_size=1, max_size=3), min_size=3, max_size=3))
    beam = data.draw(st.sampled_from([1, 3]))
    hyps = translate_sentences(
        model, tok, SOURCES[:3], DecodeConfig(beam_size=beam, **SHORT), CPU, constraints=constraints
    )
    for phrases, line in zip(constraints, hyps):
        text = tok.decode_tgt([line[0].tokens])[0]
        assert all(holds(text, p) for p in phrases), (text, phrases)


# ------------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("prefixes", "constraints", "message"),
    [
        (None, [[], ["  "]], "line 12: a required phrase is empty"),
        (None, [[], ["\u4e2d\u6587"]], "line 12: the required phrase '\u4e2d\u6587' cannot be encoded"),
        (None, [[], ["a " * 80]], "line 12: the required phrases hold"),
        (None, [[], ["a"] * 33], "line 12: 33 required phrases; the limit is 32"),
        ([None, "a " * 250], None, "line 12: the prefix has"),
    ],
)
def test_a_request_that_cannot_be_honoured_names_its_line(tok, model, prefixes, constraints, message):
    with pytest.raises(SteeringError, match=re.escape(message)):
        translate_sentences(
            model, tok, SOURCES[:2], DecodeConfig(), CPU, first_line=11, prefixes=prefixes, constraints=constraints
        )


def test_sampling_cannot_promise_phrases(tok, model):
    with pytest.raises(ValueError, match="sampling"):
        translate_sentences(model, tok, SOURCES[:1], DecodeConfig(sampling=True), CPU, constraints=[["a"]])


# ------------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from .test_serve import make_client, tiny_run

    with make_client(tiny_run(tmp_path_factory.mktemp("run"), cell="gru")) as client:
        yield client


def test_the_server_honours_constraints_and_prefixes_per_entry(server):
    tok = tiny_tokenizer()
    vocab = words(tok)
    text = ["Der Hund schläft.", "Die Katze sieht den Mann.", ""]
    body = {"text": text, "beam_size": 3, "constraints": [[vocab[0]], [], []], "prefixes": [None, "A man", None]}
    response = server.post("/translate", json=body)
    assert response.status_code == 200, response.text
    outputs = [entry["hypotheses"][0]["text"] for entry in response.json()["translations"]]
    assert holds(outputs[0], vocab[0]) and outputs[1].startswith("A man") and outputs[2] == ""
    plain = server.post("/translate", json={"text": text[1:2], "beam_size": 3, "prefixes": ["A man"]}).json()
    assert plain["translations"][0]["hypotheses"][0]["text"] == outputs[1]  # the same, batched with or without


@pytest.mark.parametrize(
    ("body", "field", "words_"),
    [
        ({"constraints": [["a"]]}, "constraints", "holds 1 entries but text 2"),
        ({"constraints": [["\u4e2d"], []]}, "constraints[0]", "cannot be encoded"),
        ({"constraints": [["a"] * 9, []]}, "constraints[0]", "at most 8 (--max-phrases)"),
        ({"constraints": [[1], []]}, "constraints[0][0]", "must be a string"),
        ({"prefixes": [None, "a " * 60]}, "prefixes[1]", "at most 80 (--max-line-chars)"),
        ({"prefixes": [None, 3]}, "prefixes[1]", "must be a string or null"),
        ({"constraints": [["a"], []], "sampling": True}, "constraints", "sampling"),
    ],
)
def test_the_server_refuses_what_it_cannot_honour_naming_the_entry(server, body, field, words_):
    response = server.post("/translate", json={"text": ["Der Hund.", "Die Katze."], **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field and words_ in error["error"], error


# ------------------------------------------------------------------------------------------- translate, evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from .test_serve import tiny_run

    return tiny_run(tmp_path_factory.mktemp("run"), cell="gru")


def test_translate_reads_constraints_and_prefixes_from_files_or_jsonl(run, tmp_path, monkeypatch, capsys):
    from .test_cli_errors import run_translate

    vocab = words(tiny_tokenizer())
    (tmp_path / "c.txt").write_text(f"{vocab[0]}\t{vocab[1]}\n\n\n", encoding="utf-8")
    (tmp_path / "p.txt").write_text("\nA man\n\n", encoding="utf-8")
    source = "Der Hund schläft.\nDie Katze.\n\n"
    files = ["--constraints", tmp_path / "c.txt", "--prefixes", tmp_path / "p.txt"]
    status, out, err, _ = run_translate([run, "--beam-size", "3", *files], source, monkeypatch, capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and holds(lines[0], vocab[0]) and holds(lines[0], vocab[1])
    assert lines[1].startswith("A man") and lines[2] == ""
    records = [
        {"src": "Der Hund schläft.", "constraints": [vocab[0], vocab[1]]},
        {"src": "Die Katze.", "prefix": "A man"},
        {"src": ""},
    ]
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    status, out_jsonl, err, _ = run_translate([run, "--beam-size", "3", "--jsonl"], jsonl, monkeypatch, capsys)
    assert status == 0 and out_jsonl == out


@pytest.mark.parametrize(
    ("constraints", "source", "message"),
    [
        ("a\n", "Der Hund.\nDie Katze.\n", "line 2: "),  # the file ends before the input
        ("a\n\nb\n", "Der Hund.\nDie Katze.\n", "has more lines than the input (2)"),
        ("\n\u4e2d\n", "Der Hund.\nDie Katze.\n", "line 2: the required phrase '\u4e2d' cannot be encoded"),
    ],
)
def test_translate_names_the_line_of_a_bad_request_and_exits_2(
    run, tmp_path, monkeypatch, capsys, constraints, source, message
):
    from .test_cli_errors import run_translate

    (tmp_path / "c.txt").write_text(constraints, encoding="utf-8")
    status, _, err, _ = run_translate([run, "--constraints", tmp_path / "c.txt"], source, monkeypatch, capsys)
    assert status == 2 and message in err and "Traceback" not in err


def test_a_bad_jsonl_line_is_named(run, monkeypatch, capsys):
    from .test_cli_errors import run_translate

    for bad, message in (
        ('{"source": "b"}', 'line 2: expected a JSON object with a string "src"'),
        ('{"src": "b", "prefx": "A"}', "line 2: unknown field(s) ['prefx']"),
        ("[1", "line 2: not JSON"),
    ):
        status, _, err, _ = run_translate([run, "--jsonl"], '{"src": "a"}\n' + bad + "\n", monkeypatch, capsys)
        assert status == 2 and message in err, err


def test_evaluate_scores_with_constraints(run, tmp_path, capsys):
    from seq2seq import evaluate

    vocab = words(tiny_tokenizer())
    src, ref = corpus_lines("test", 3)
    for name, lines in (("src", src), ("ref", ref), ("c", [vocab[0], "", vocab[1]])):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [
        str(run),
        "--src",
        str(tmp_path / "src"),
        "--ref",
        str(tmp_path / "ref"),
        "--constraints",
        str(tmp_path / "c"),
    ]
    assert evaluate.main([*args, "--output", str(tmp_path / "out"), "--json"]) == 0
    out = (tmp_path / "out").read_text(encoding="utf-8").splitlines()
    assert holds(out[0], vocab[0]) and holds(out[2], vocab[1])
    (tmp_path / "c").write_text("a\n", encoding="utf-8")
    assert evaluate.main(args) == 2
    assert "has 1 lines but --src has 3" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- coverage penalty


def test_the_coverage_penalty_ranks_a_hypothesis_that_left_source_words_unattended_lower():
    """Two outputs as probable as each other: "A EOS" attends to both source words, "B EOS" to the first twice."""
    from dataclasses import dataclass

    from seq2seq.decoding.search import beam_search
    from seq2seq.vocab import EOS_ID

    a, b = 4, 5

    @dataclass
    class State:
        prefixes: list[tuple[int, ...]]
        attention: torch.Tensor | None = None

        def index_select(self, rows):
            return State([self.prefixes[i] for i in rows.tolist()])

        reorder = index_select

    def step(prev, state):
        prefixes = [p + (int(t),) for p, t in zip(state.prefixes, prev)]
        rows, weights = [], []
        for p in prefixes:
            probs = torch.full((6,), 1e-9)
            if len(p) == 1:
                probs[a] = probs[b] = 0.5
                weights.append([1.0, 0.0, 0.0])  # the first step attends to word 1 (index 2: EOS's column, unused)
            else:
                probs[EOS_ID] = 1.0
                weights.append([0.0, 1.0, 0.0] if p[1] == a else [1.0, 0.0, 0.0])
            rows.append((probs / probs.sum()).log())
        return torch.stack(rows), State(prefixes, torch.tensor(weights))

    lengths, src_lengths = torch.tensor([4]), torch.tensor([2])
    plain = beam_search(step, State([(), ()]), lengths, beam_size=2, nbest=2)[0]
    covered = beam_search(step, State([(), ()]), lengths, 2, nbest=2, coverage_penalty=0.5, src_lengths=src_lengths)[0]
    assert {tuple(h.tokens) for h in plain} == {(a,), (b,)} and plain[0].score == plain[1].score
    assert covered[0].tokens == [a] and covered[1].score < covered[0].score == pytest.approx(plain[0].score)


def test_the_coverage_penalty_needs_attention_and_no_constraints(tok):
    model = tiny_model(tok, seed=3, attention="none")[0]
    with pytest.raises(ValueError, match="needs a model with attention"):
        translate_sentences(model, tok, SOURCES[:1], DecodeConfig(beam_size=2, coverage_penalty=0.2), CPU)
    with_attention = tiny_model(tok, seed=3)[0]
    with pytest.raises(ValueError, match="not constrained ones"):
        cfg = DecodeConfig(beam_size=2, coverage_penalty=0.2)
        translate_sentences(with_attention, tok, SOURCES[:1], cfg, CPU, constraints=[["a"]])


def test_holds_phrase_finds_ids_in_a_row():
    from seq2seq.decoding.inference import holds_phrase

    assert holds_phrase([5, 6, 7, 8], (6, 7)) and holds_phrase([5], (5,))
    assert not holds_phrase([5, 7, 6], (6, 7)) and not holds_phrase([], (1,))
