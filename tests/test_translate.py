"""translate keeps exactly one output line per input line, whatever the input bytes (property-based)."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.config import DecodeConfig
from seq2seq.files import read_lines
from seq2seq.translate import read_chunks, translate_stream

from .tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer(joint=True)
    return tiny_model(tok, seed=0)[0], tok


def run(tiny, data: bytes, **decode) -> list[str]:
    model, tok = tiny
    out = io.StringIO()
    cfg = DecodeConfig(max_len_a=0.0, max_len_b=5, batch_size=4, **decode)
    translate_stream(model, tok, cfg, io.BytesIO(data), out, chunk_size=3)
    text = out.getvalue()
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1] if text else []


def expected_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def test_hard_inputs_keep_alignment(tiny, caplog):
    lines = [
        b"",
        b"   ",
        b"Der Hund schl\xc3\xa4ft.",
        b"\xff\xfe invalid \xc3 UTF-8",
        b"control \x00\x07\x1b[31m chars \r in the middle",
        b"\xe2\x80\xa8 line separator U+2028 and \x0c form feed",
        " ".join(["Hund"] * 10_000).encode(),
        b"final line without a newline",
    ]
    out = run(tiny, b"\n".join(lines))
    assert len(out) == len(lines)
    assert out[0] == "" and out[1] == ""
    assert all("\n" not in line and "\r" not in line for line in out)
    warnings = caplog.text
    assert "input line 4: invalid UTF-8" in warnings
    assert "input line 7: 50000 subword tokens, truncated to 1000" in warnings


def test_crlf_input_and_nbest(tiny):
    out = run(tiny, b"Der Hund.\r\nDie Katze.\r\n", beam_size=3, nbest=2)
    assert len(out) == 2 and all(line.count(" ||| ") == 1 for line in out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_give_one_line_per_input_line(tiny, data):
    assert len(run(tiny, data)) == expected_lines(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40),
        max_size=8,
    )
)
def test_random_unicode_lines_give_one_line_each(tiny, lines):
    data = "\n".join(lines).encode("utf-8")
    assert len(run(tiny, data)) == expected_lines(data)


def test_read_chunks_splits_on_newline_only():
    chunks = list(read_chunks(io.BytesIO(b"a\rb\nc\x85d\n\ne"), size=2))
    assert chunks == [["a\rb", "c\ufffdd"], ["", "e"]]  # \x85 alone is not UTF-8: replaced, not a line break


def test_evaluate_reads_lines_like_translate(tmp_path):
    data = b"a\rb\nc d\r\n\ne"
    (tmp_path / "src.txt").write_bytes(data)
    expected = [line for chunk in read_chunks(io.BytesIO(data), size=10) for line in chunk]
    assert read_lines(str(tmp_path / "src.txt")) == expected == ["a\rb", "c d", "", "e"]
    (tmp_path / "bad.txt").write_bytes(b"ok\nbad \xff\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: not UTF-8"):
        read_lines(str(tmp_path / "bad.txt"))
