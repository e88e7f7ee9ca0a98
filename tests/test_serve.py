"""seq2seq.serve in-process (FastAPI's TestClient): one entry per line, n-best, attention, limits, batching."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from seq2seq import serve, shortlist
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.loading import load_for_decoding
from seq2seq.model.seq2seq import count_parameters
from seq2seq.results import CheckpointScores, RunResults, SearchScores, TrainSummary, ValidSummary
from seq2seq.serving import app as api

from .tiny_models import CORPUS, tiny_checkpoint, tiny_tokenizer

LINES = ["Der Hund schläft.", "", "Die Katze sieht den Mann.", "   ", "Ein Mann läuft."]
SMALL = api.Limits(max_body_bytes=3000, max_lines=6, max_line_chars=80, max_beam_size=4, max_alpha=1.5)


def tiny_run(folder: Path, **model: Any) -> Path:
    """A run folder as training leaves it: checkpoints/best.pt, a tiny untrained model (hidden size 8) with
    SentencePiece models of 150 pieces per side, and a results.json recording its test BLEU."""
    best = tiny_checkpoint(folder / "checkpoints" / "best.pt", tiny_tokenizer(), seed=0, **model)
    write_results(folder, best)
    return folder


def write_results(run: Path, checkpoint: Path) -> None:
    """A results.json as training leaves it, recording test BLEU 12.5 (greedy) and 13.5 (beam 4) for best.pt."""
    scores = [SearchScores(beam, bleu, 30.0, "BLEU-SIG", "CHRF-SIG", 10.0) for beam, bleu in ((1, 12.5), (4, 13.5))]
    train = TrainSummary(3, 1, 0.1, 0.2, 1000, None, "cpu")
    RunResults(CheckpointScores(*scores), ValidSummary(10.0, 3), train, str(checkpoint)).save(run / "results.json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny untrained GRU with Bahdanau attention, in a run folder with a results.json."""
    return tiny_run(tmp_path_factory.mktemp("run"), cell="gru")


def make_client(run: Path, limits: api.Limits = SMALL, **batching: Any) -> TestClient:
    device = torch.device("cpu")
    model, tokenizer, config, *_ = load_for_decoding([run], "cpu")
    translator = api.Translator(model, tokenizer, config.decode)
    info = serve.model_info(count_parameters(model), tokenizer, config, [run], device)
    app = api.create_app(translator, info, limits, api.DecodeSettings(1, 1, 0.6, False), **batching)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(run_dir):
    with make_client(run_dir) as test_client:
        yield test_client


def translate(client: TestClient, **request: Any) -> dict[str, Any]:
    response = client.post("/translate", json=request)
    assert response.status_code == 200, response.text
    return response.json()


def texts(result: dict[str, Any]) -> list[str]:
    return [entry["hypotheses"][0]["text"] for entry in result["translations"]]


# ------------------------------------------------------------------------------------ translations
def test_one_entry_per_line_in_order_as_translate_gives_them(client, run_dir):
    result = translate(client, text=LINES)
    assert len(result["translations"]) == len(LINES)
    assert (result["beam_size"], result["nbest"], result["attention"]) == (1, 1, False)
    model, tokenizer, config, *_ = load_for_decoding([run_dir], "cpu")
    expected = translate_sentences(model, tokenizer, LINES, config.decode, torch.device("cpu"))
    assert texts(result) == tokenizer.decode_tgt([hyps[0].tokens for hyps in expected])
    for i in (1, 3):  # empty and blank lines keep their slot, with one empty hypothesis
        assert result["translations"][i]["hypotheses"] == [{"text": "", "score": 0.0, "log_prob": 0.0}]
    alone = [texts(translate(client, text=[line]))[0] for line in LINES]
    assert alone == texts(result)


def test_nbest_lists_are_sorted_and_beam_defaults_to_nbest(client):
    result = translate(client, text=LINES[:3], beam_size=3, nbest=2, alpha=1.0)
    assert (result["beam_size"], result["nbest"], result["alpha"]) == (3, 2, 1.0)
    for i, entry in enumerate(result["translations"]):
        scores = [h["score"] for h in entry["hypotheses"]]
        assert len(scores) == (1 if i == 1 else 2) and scores == sorted(scores, reverse=True)
    assert translate(client, text=["Der Hund."], nbest=3)["beam_size"] == 3


def check_attention(hypothesis: dict[str, Any]) -> tuple[list[str], list[str]]:
    attention = hypothesis["attention"]
    weights, src, out = attention["weights"], attention["source_pieces"], attention["output_pieces"]
    assert len(weights) == len(out) and all(len(row) == len(src) for row in weights)
    assert all(abs(sum(row) - 1.0) < 1e-2 for row in weights)
    return src, out


def test_greedy_attention_rows_are_output_pieces_and_columns_source_pieces(client):
    result = translate(client, text=["Der Hund schläft.", ""], attention=True)
    src, out = check_attention(result["translations"][0]["hypotheses"][0])
    assert src[-1] == "</s>" and "".join(src[:-1]).replace("\u2581", " ").strip() == "Der Hund schläft."
    assert 1 <= len(out) <= 6 + 1 + 1.5 * (len(src) - 1)  # max_len_b=6 of the tiny config, EOS included
    empty = result["translations"][1]["hypotheses"][0]["attention"]
    assert empty == {"source_pieces": [], "output_pieces": [], "weights": []}


def test_beam_attention_for_every_hypothesis(client):
    result = translate(client, text=["Die Katze.", "Der Mann."], beam_size=3, nbest=2, attention=True)
    for entry in result["translations"]:
        for hypothesis in entry["hypotheses"]:
            src, out = check_attention(hypothesis)
            assert src[-1] == "</s>" and out[-1] == "</s>"


def test_attention_of_a_model_without_attention_is_refused(tmp_path):
    plain = tiny_run(tmp_path, attention="none")
    with make_client(plain) as plain_client:
        response = plain_client.post("/translate", json={"text": ["Der Hund."], "attention": True})
        assert response.status_code == 422 and response.json()["field"] == "attention"
        assert "no attention" in response.json()["error"]
        assert plain_client.get("/info").json()["features"] == {"attention": False, "attention_with_beam": False}
        assert len(translate(plain_client, text=["Der Hund."])["translations"]) == 1


# ---------------------------------------------------------------------------------------- limits
def too_many_bytes() -> bytes:
    return json.dumps({"text": ["x" * 70] * 6, "alpha": 0.5, "pad": " " * 3000}).encode()


REFUSED = [  # (body, status, field, words the message must hold)
    (too_many_bytes(), 413, "body", ["3000 bytes", "--max-body-bytes"]),
    ({"text": ["a"] * 7}, 422, "text", ["7 lines", "at most 6", "--max-lines"]),
    ({"text": ["a", "b" * 81]}, 422, "text[1]", ["81 characters", "at most 80", "--max-line-chars"]),
    ({"text": []}, 422, "text", ["empty"]),
    ({"text": ["a"], "beam_size": 0}, 422, "beam_size", ["between 1 and 4", "--max-beam-size"]),
    ({"text": ["a"], "beam_size": 5}, 422, "beam_size", ["between 1 and 4", "not 5"]),
    ({"text": ["a"], "nbest": 0}, 422, "nbest", ["between 1 and 4"]),
    ({"text": ["a"], "beam_size": 2, "nbest": 3}, 422, "nbest", ["at most beam_size (2)"]),
    ({"text": ["a"], "alpha": -0.1}, 422, "alpha", ["between 0 and 1.5", "--max-alpha"]),
    ({"text": ["a"], "alpha": 2}, 422, "alpha", ["between 0 and 1.5"]),
    (b'{"text": ["a"], "alpha": NaN}', 400, "body", ["NaN"]),
    (b'{"text": ["a"]', 400, "body", ["malformed JSON"]),
    (b"", 400, "body", ["malformed JSON"]),
    (b'{"text": ["\xff\xfe"]}', 400, "body", ["UTF-8"]),
    (b'{"text": ["\\ud800"]}', 422, "text[0]", ["surrogate"]),
    ([1, 2], 422, "body", ["JSON object"]),
    ({}, 422, "text", ["required"]),
    ({"text": "Der Hund."}, 422, "text", ["a list of strings"]),
    ({"text": ["a", 7]}, 422, "text[1]", ["a string"]),
    ({"text": ["a"], "beam_size": "2"}, 422, "beam_size", ["an integer"]),
    ({"text": ["a"], "beam_size": 2.5}, 422, "beam_size", ["an integer"]),
    ({"text": ["a"], "alpha": "high"}, 422, "alpha", ["a number"]),
    ({"text": ["a"], "attention": "yes"}, 422, "attention", ["true or false"]),
    ({"text": ["a"], "beam": 5}, 422, "beam", ["unknown field", "beam_size"]),
]


@pytest.mark.parametrize("body,status,field,words", REFUSED, ids=[f"{i}-{r[2]}" for i, r in enumerate(REFUSED)])
def test_refusals_are_json_naming_the_field_and_the_limit(client, body, status, field, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/translate", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    for word in words:
        assert word in error["error"], error
    assert client.get("/health").json()["status"] == "ok"  # and the server lives on


def test_a_body_without_content_length_is_cut_at_the_limit(client):
    chunks = (b'{"text": ["' + b"a" * 500 + b'"]}' for _ in range(10))  # streamed (chunked), 5 kB
    response = client.post("/translate", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/nowhere").json() == {"error": "Not Found", "field": None}
    assert client.get("/translate").status_code == 405


# ----------------------------------------------------------------------------------- batching
def test_concurrent_requests_share_decoding_batches(run_dir):
    with make_client(run_dir, max_batch_sentences=64, max_wait_ms=300) as batched:
        sequential = [texts(translate(batched, text=[line]))[0] for line in LINES]
        before = batched.get("/health").json()
        start, results = threading.Barrier(len(LINES) * 2), {}

        def post(i: int) -> None:
            start.wait()
            results[i] = texts(translate(batched, text=[LINES[i % len(LINES)]]))[0]

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(LINES) * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        after = batched.get("/health").json()
    assert [results[i] for i in range(len(threads))] == sequential * 2
    assert after["requests"] - before["requests"] == len(threads)
    assert after["batches"] - before["batches"] < len(threads)
    assert after["largest_batch"] > 1 and after["queued_sentences"] == 0


def test_settings_are_not_mixed_in_one_batch(run_dir):
    with make_client(run_dir, max_wait_ms=200) as batched:
        start, results = threading.Barrier(4), {}

        def post(i: int) -> None:
            start.wait()
            results[i] = translate(batched, text=["Der Hund."], beam_size=1 + i % 2, attention=i % 2 == 0)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert batched.get("/health").json()["batches"] >= 2
    for i, result in results.items():
        assert result["beam_size"] == 1 + i % 2
        assert ("attention" in result["translations"][0]["hypotheses"][0]) == (i % 2 == 0)


@pytest.mark.parametrize("batching", ["continuous", "dynamic"])
def test_concurrent_greedy_and_beam_requests_get_what_translate_gives(run_dir, batching):
    """Requests of two settings arrive together; each gets translate's output (continuous batching: they join
    running batches between steps, one setting per batch)."""
    model, tokenizer, config, *_ = load_for_decoding([run_dir], "cpu")
    expected = {
        beam: [
            hyps[0].tokens
            for hyps in translate_sentences(
                model, tokenizer, LINES, replace(config.decode, beam_size=beam), torch.device("cpu")
            )
        ]
        for beam in (1, 3)
    }
    with make_client(run_dir, max_batch_sentences=4, batching=batching) as batched:
        start, results = threading.Barrier(len(LINES) * 2), {}

        def post(i: int) -> None:
            beam = 1 + 2 * (i % 2)
            start.wait()
            results[i] = (beam, texts(translate(batched, text=LINES[: 1 + i % len(LINES)], beam_size=beam)))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(LINES) * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        health, info = batched.get("/health").json(), batched.get("/info").json()
    for beam, got in results.values():
        assert got == tokenizer.decode_tgt(expected[beam][: len(got)])
    assert len(results) == len(threads) and health["queued_sentences"] == 0
    assert info["batching"]["kind"] == batching
    if batching == "continuous":  # a request of 5 lines is split across steps; dynamic batching decodes it alone
        assert health["largest_batch"] <= 4 and health["steps"] > 0
    else:
        assert health["largest_batch"] == 5 and health["steps"] == 0


def test_an_unknown_batching_is_refused(run_dir):
    with pytest.raises(ValueError, match="batching must be one of continuous, dynamic"):
        make_client(run_dir, batching="static")


# ------------------------------------------------------------------------------ info, health, page
def test_info_describes_the_model_and_its_recorded_test_bleu(client, run_dir):
    info = client.get("/info").json()
    model, _, _, *_ = load_for_decoding([run_dir], "cpu")
    assert info["model"]["cell"] == "gru" and info["model"]["attention"] == "bahdanau"
    assert info["model"]["hidden_size"] == 8 and info["model"]["parameters"] == count_parameters(model)
    assert info["languages"] == {"source": "de", "target": "en"}
    assert info["vocabulary"]["source"] == info["vocabulary"]["target"] == 150
    bleu = info["checkpoints"][0]["test_bleu"]
    assert (bleu["greedy"], bleu["beam"], bleu["beam_size"]) == (12.5, 13.5, 4)
    assert info["limits"]["max_lines"] == 6 and info["defaults"]["beam_size"] == 1
    assert info["features"] == {"attention": True, "attention_with_beam": True}


def test_recorded_test_bleu_only_for_the_scored_checkpoints(run_dir, tmp_path):
    assert serve.recorded_test_bleu(run_dir / "checkpoints" / "best.pt")["beam"] == 13.5
    assert serve.recorded_test_bleu(run_dir / "checkpoints" / "last.pt") is None
    assert serve.recorded_test_bleu(tmp_path / "loose.pt") is None


def test_health_page_and_docs(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and {"requests", "batches", "sentences"} <= set(health)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="heatmap"' in page.text and "http" not in page.text.split("<footer>")[0]  # nothing from elsewhere
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    schema = client.get("/openapi.json").json()["paths"]["/translate"]["post"]
    assert "text" in schema["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert client.get("/docs").status_code == 200


def test_the_command_line_names_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    assert serve.main([str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seq2seq.serve: ") and "missing.pt" in err[0]
    assert serve.main([str(tmp_path / "missing.pt"), "--max-lines", "0"]) == 2
    assert "--max-lines must be positive" in capsys.readouterr().err
    assert serve.main([str(tmp_path / "missing.pt"), "--threads", "0"]) == 2
    assert "--threads must be positive" in capsys.readouterr().err


def test_the_command_line_serves_an_int8_model(run_dir, monkeypatch):
    """`--quantize int8 --threads 1`: the app it would serve decodes with int8 products, and /info says so."""
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.update(app=app, **options))
    threads = torch.get_num_threads()
    try:
        options = ["--quantize", "int8", "--threads", "1", "--decoders", "2", "--port", "8123"]
        assert serve.main([str(run_dir), *options]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert served["port"] == 8123
    with TestClient(served["app"]) as test_client:
        info = test_client.get("/info").json()
        assert info["quantize"] == "int8" and info["model"]["parameters"] > 0
        assert info["batching"]["decoders"] == 2
        assert len(translate(test_client, text=LINES)["translations"]) == len(LINES)


def test_the_command_line_serves_with_a_shortlist(run_dir, tmp_path, monkeypatch, capsys):
    """`--shortlist` needs one stored in the checkpoint (else exit 2 naming the command); then /info says so."""
    checkpoint = tmp_path / "best.pt"
    shutil.copy(run_dir / "checkpoints" / "best.pt", checkpoint)
    assert serve.main([str(checkpoint), "--shortlist"]) == 2
    assert "python -m seq2seq.shortlist" in capsys.readouterr().err
    assert shortlist.main([str(checkpoint), "--src", str(CORPUS / "val.de"), "--tgt", str(CORPUS / "val.en")]) == 0
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.update(app=app, **options))
    assert serve.main([str(checkpoint), "--shortlist"]) == 0
    with TestClient(served["app"]) as test_client:
        assert test_client.get("/info").json()["shortlist"] is True
        assert len(translate(test_client, text=LINES, beam_size=2)["translations"]) == len(LINES)
