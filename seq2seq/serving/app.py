"""The web service behind `python -m seq2seq.serve`: the JSON API, its limits, and the page at `/`.

`create_app(translator, info, limits, ...)` returns a FastAPI app:

- `POST /translate` {"text": [lines], "beam_size"?, "nbest"?, "alpha"?, "attention"?, "sampling"?, "top_k"?,
  "top_p"?, "epsilon"?, "temperature"?, "seed"?} -> exactly one entry per line, in order, each holding the
  `nbest` hypotheses (or with sampling `nbest` samples: text, score, log-probability and, when asked for,
  the attention matrix over source and output pieces);
- `GET /health` (status and the batching counters), `GET /info` (the model), `GET /` (the page),
  `GET /docs` (OpenAPI, from FastAPI).

Requests are read and checked here, on the event loop; decoding happens in the decoder threads of the
batcher: by default `continuous.ContinuousBatcher`, where a request's sentences join the running batch
between decoder steps and leave it the step they end (continuous batching), or with `--batching dynamic`
`batcher.DynamicBatcher`, where requests with the same settings that arrive together share a decode. Every
refusal is a 4xx JSON body {"error": message, "field": name} whose message names the field and the limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from seq2seq.config import ConfigError, DecodeConfig, validate_decode
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.inference import (
    AttentionMap,
    encode_sources,
    encode_steering,
    hypothesis_attention,
    translate_sentences,
)
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.decoding.loading import MAX_SOURCE_TOKENS
from seq2seq.decoding.running import RunningTranslation, runs
from seq2seq.decoding.search import Hypothesis
from seq2seq.decoding.steering import SteeringError
from seq2seq.serving.batcher import DynamicBatcher, QueueFull
from seq2seq.serving.continuous import ContinuousBatcher
from seq2seq.serving.errors import RequestError

log = logging.getLogger("seq2seq.serve")

STATIC = Path(__file__).parent / "static"
BATCHINGS = ("continuous", "dynamic")  # --batching
# --max-wait-ms by default: how long queued lines wait for company before they join a running batch (measured
# best on a 2-core CPU, docs/benchmarks.md#serving), or before a dynamic batch is decoded
MAX_WAIT_MS = {"continuous": 20.0, "dynamic": 5.0}


# ----------------------------------------------------------------------------- limits and settings
@dataclass(frozen=True)
class Limits:
    """What one request may ask for; each is a command-line flag of `seq2seq.serve` (the flag is in the messages)."""

    max_body_bytes: int = 1_000_000  # --max-body-bytes
    max_lines: int = 100  # --max-lines: lines (sentences) per request
    max_line_chars: int = 2000  # --max-line-chars: characters per line
    max_beam_size: int = 16  # --max-beam-size: also bounds nbest (and the samples per line)
    max_alpha: float = 2.0  # --max-alpha: the length penalty's alpha is in [0, max_alpha]
    max_queued_sentences: int = 2000  # --max-queued-sentences: beyond it a request gets 503 (busy)
    max_phrases: int = 8  # --max-phrases: required phrases per line (each at most max_line_chars)


@dataclass(frozen=True)
class DecodeSettings:
    """A request's decode settings; requests share a decoding batch only when theirs are equal."""

    beam_size: int
    nbest: int
    alpha: float
    attention: bool
    sampling: bool = False
    top_k: int = 0
    top_p: float = 1.0
    epsilon: float = 0.0
    temperature: float = 1.0
    seed: int = 0

    def decode_fields(self) -> dict[str, Any]:
        """The settings that are `DecodeConfig` fields (all but `attention`)."""
        return {k: v for k, v in asdict(self).items() if k != "attention"}


SAMPLING_FIELDS = ("top_k", "top_p", "epsilon", "temperature", "seed")  # they apply with "sampling": true only
MAX_SEED = 2**63 - 1


class TranslateRequest(BaseModel):
    """The body of POST /translate (types only; `check_request` applies the limits)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"examples": [{"text": ["Ein Mann fährt Fahrrad.", ""], "beam_size": 1, "attention": True}]},
    )
    text: list[str] = Field(description="the sentences to translate, one per entry; an empty one gets an empty entry")
    beam_size: int | None = Field(None, description="1 = greedy; default: the checkpoint's decode.beam_size")
    nbest: int | None = Field(None, description="hypotheses per line (1..beam_size); default 1")
    alpha: float | None = Field(None, description="length penalty ((5+len)/6)^alpha; default: the checkpoint's")
    attention: bool = Field(False, description="also return each hypothesis' attention over the source pieces")
    sampling: bool = Field(False, description="draw each output from the model's distribution; nbest: samples")
    top_k: int | None = Field(None, description="sampling: from the k most probable tokens only (0: all, 1: greedy)")
    top_p: float | None = Field(None, description="sampling: from the fewest most probable tokens whose mass is p")
    epsilon: float | None = Field(None, description="sampling: never a token whose probability is below epsilon")
    temperature: float | None = Field(None, description="sampling: divides the log-probabilities (> 0)")
    seed: int | None = Field(None, description="sampling: with each sentence, decides its samples (default 0)")
    target_lang: str | None = Field(
        None, description="a multilingual model: the output language (each line gets the tag <2LANG> first)"
    )
    constraints: list[list[str]] | None = Field(
        None, description="required phrases, one list per entry of text: every output holds them ([]: none)"
    )
    prefixes: list[str | None] | None = Field(
        None, description="forced prefixes, one per entry of text (null: none): every output starts with it"
    )


@dataclass(frozen=True)
class Line:
    """One entry of a request's text, with what its output must start with and hold."""

    text: str
    prefix: str | None = None
    phrases: tuple[str, ...] = ()


class Attention(BaseModel):
    source_pieces: list[str] = Field(description="the source's subword pieces and a final '</s>': the columns")
    output_pieces: list[str] = Field(description="the output pieces and a final '</s>': the rows")
    weights: list[list[float]] = Field(description="(output pieces, source pieces); each row sums to 1")


class HypothesisOut(BaseModel):
    text: str
    score: float = Field(description="log-probability / length penalty: what beam search ranks by")
    log_prob: float = Field(description="the summed token log-probabilities (EOS included when produced)")
    attention: Attention | None = Field(None, description="only when the request asked for attention")


class LineOut(BaseModel):
    hypotheses: list[HypothesisOut] = Field(description="nbest hypotheses, best first")


class TranslateResponse(BaseModel):
    translations: list[LineOut] = Field(description="exactly one entry per input line, in order")
    beam_size: int
    nbest: int
    alpha: float
    attention: bool
    sampling: bool
    top_k: int
    top_p: float
    epsilon: float
    temperature: float
    seed: int


class ErrorOut(BaseModel):
    error: str = Field(description="what is wrong, naming the field and the limit")
    field: str | None = Field(description="the field at fault, e.g. 'beam_size' or 'text[3]'; 'body' for the body")


# ---------------------------------------------------------------------------------- reading requests
def decode_json(body: bytes) -> Any:
    """The JSON value of a request body: 400 for invalid UTF-8 or malformed JSON (NaN and Infinity included)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "body", f"the request body is not valid UTF-8 (byte {exc.start})") from None

    def refuse(name: str) -> Any:
        raise RequestError(400, "body", f"malformed JSON: {name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise RequestError(400, "body", f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise RequestError(400, "body", "malformed JSON: nested too deeply") from None


def parse_request(
    body: bytes,
    limits: Limits,
    defaults: DecodeSettings,
    attention_problem: Callable[[int], str | None],
    tokenizer: Tokenizer | None = None,
) -> tuple[list[str], DecodeSettings]:
    """The lines and settings of a POST /translate body, or a `RequestError` naming the field and the limit.

    `attention_problem(beam_size)` says why attention cannot be given at that beam size (None: it can).
    With `target_lang` (a multilingual model), the lines ask `tokenizer` for that output language.
    """
    value = decode_json(body)
    try:
        request = TranslateRequest.model_validate(value, strict=True)
    except ValidationError as exc:
        raise _type_error(exc) from None
    lines = check_lines(request.text, limits)
    settings = check_settings(request, limits, defaults, attention_problem)
    if request.target_lang is not None:
        try:
            if tokenizer is None:
                raise ValueError("this server has no tokenizer to pick a target language with")
            lines = tokenizer.with_target_language(lines, request.target_lang)
        except ValueError as exc:
            raise RequestError(422, "target_lang", str(exc)) from None
    return steered_lines(lines, request, limits, settings), settings


def steered_lines(lines: list[str], request: TranslateRequest, limits: Limits, settings: DecodeSettings) -> list[Line]:
    """The lines with their prefixes and phrases, within the limits: one entry per line of text, at most
    `max_phrases` phrases per line, each phrase and prefix at most `max_line_chars`; phrases need a search."""
    for name, given in (("constraints", request.constraints), ("prefixes", request.prefixes)):
        if given is not None and len(given) != len(lines):
            raise RequestError(
                422, name, f"{name} holds {len(given)} entries but text {len(lines)}: one per line of text"
            )
    constraints = request.constraints or [[] for _ in lines]
    prefixes = request.prefixes or [None for _ in lines]
    for i, (phrases, prefix) in enumerate(zip(constraints, prefixes)):
        if len(phrases) > limits.max_phrases:
            raise RequestError(
                422,
                f"constraints[{i}]",
                f"constraints[{i}] holds {len(phrases)} phrases; at most {limits.max_phrases} (--max-phrases)",
            )
        for text, field in [*((p, f"constraints[{i}]") for p in phrases), (prefix or "", f"prefixes[{i}]")]:
            if len(text) > limits.max_line_chars:
                raise RequestError(
                    422,
                    field,
                    f"{field} has {len(text)} characters; at most {limits.max_line_chars} (--max-line-chars)",
                )
    if any(constraints) and settings.sampling:
        raise RequestError(422, "constraints", "required phrases need a search: sampling cannot promise them")
    return [Line(text, prefix, tuple(phrases)) for text, prefix, phrases in zip(lines, prefixes, constraints)]


def _type_error(exc: ValidationError) -> RequestError:
    error = exc.errors()[0]
    loc = error["loc"]
    if not loc:
        return RequestError(422, "body", 'the request body must be a JSON object such as {"text": ["..."]}')
    field = str(loc[0]) + "".join(f"[{part}]" for part in loc[1:])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(TranslateRequest.model_fields)
        return RequestError(422, field, f"unknown field {field!r}; the fields are {allowed}")
    if error["type"] == "missing":
        return RequestError(422, field, f"{field} is required: a list of sentences (strings)")
    expected = {"text": "a list of strings", "beam_size": "an integer", "nbest": "an integer", "alpha": "a number"}
    expected.update(top_k="an integer", seed="an integer", top_p="a number", epsilon="a number", temperature="a number")
    expected.update(target_lang="a string such as fr", constraints="a list of lists of phrases (strings), one per line")
    expected.update(prefixes="a list of strings or nulls, one per line")
    wanted = expected.get(field)
    if wanted is None:
        if field.startswith(("text[", "constraints[")) and field.count("[") == (1 if field.startswith("text") else 2):
            wanted = "a string"
        elif field.startswith("constraints["):
            wanted = "a list of phrases (strings)"
        elif field.startswith("prefixes["):
            wanted = "a string or null"
        else:
            wanted = "true or false"
    return RequestError(422, field, f"{field} must be {wanted}, not {json.dumps(error['input'])[:40]}")


def check_lines(lines: list[str], limits: Limits) -> list[str]:
    """The text field within its limits: at least one line, at most `max_lines`, each valid Unicode and short enough."""
    if not lines:
        raise RequestError(422, "text", "text is an empty list; send at least one line")
    if len(lines) > limits.max_lines:
        raise RequestError(
            422, "text", f"text holds {len(lines)} lines; at most {limits.max_lines} per request (--max-lines)"
        )
    for i, line in enumerate(lines):
        if len(line) > limits.max_line_chars:
            raise RequestError(
                422,
                f"text[{i}]",
                f"text[{i}] has {len(line)} characters; at most {limits.max_line_chars} per line (--max-line-chars)",
            )
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
            raise RequestError(422, f"text[{i}]", f"text[{i}] is not valid Unicode (a lone surrogate)") from None
    return lines


def check_settings(
    request: TranslateRequest,
    limits: Limits,
    defaults: DecodeSettings,
    attention_problem: Callable[[int], str | None],
) -> DecodeSettings:
    """beam_size in [1, max_beam_size] (when omitted: the default, raised to nbest; with sampling 1), nbest in
    [1, beam_size] (with sampling: [1, max_beam_size] samples), alpha in [0, max_alpha], the sampling fields in
    their ranges (and only with sampling), and attention only where the model can give it."""
    nbest = 1 if request.nbest is None else request.nbest
    if not 1 <= nbest <= limits.max_beam_size:
        raise RequestError(
            422, "nbest", f"nbest must be between 1 and {limits.max_beam_size} (--max-beam-size), not {nbest}"
        )
    if request.sampling:
        return check_sampling(request, nbest, defaults, attention_problem)
    for name in SAMPLING_FIELDS:
        if getattr(request, name) is not None:
            raise RequestError(422, name, f'{name} applies to sampling only: add "sampling": true')
    beam_size = max(defaults.beam_size, nbest) if request.beam_size is None else request.beam_size
    if not 1 <= beam_size <= limits.max_beam_size:
        raise RequestError(
            422,
            "beam_size",
            f"beam_size must be between 1 and {limits.max_beam_size} (--max-beam-size), not {beam_size}",
        )
    if nbest > beam_size:
        raise RequestError(422, "nbest", f"nbest must be at most beam_size ({beam_size}), not {nbest}")
    alpha = defaults.alpha if request.alpha is None else request.alpha
    if not 0.0 <= alpha <= limits.max_alpha:  # also false for NaN
        raise RequestError(422, "alpha", f"alpha must be between 0 and {limits.max_alpha} (--max-alpha), not {alpha}")
    if request.attention and (problem := attention_problem(beam_size)):
        raise RequestError(422, "attention", problem)
    return DecodeSettings(beam_size, nbest, float(alpha), request.attention)


def check_sampling(
    request: TranslateRequest, nbest: int, defaults: DecodeSettings, attention_problem: Callable[[int], str | None]
) -> DecodeSettings:
    """The settings of a sampling request: beam_size 1 (or absent), top_k >= 0, top_p in (0, 1], epsilon in
    [0, 1), temperature > 0 (at most 100), seed in [0, 2^63 - 1]; omitted ones take the server's defaults."""
    if request.beam_size not in (None, 1):
        raise RequestError(422, "beam_size", f"sampling searches no beam: beam_size must be 1, not {request.beam_size}")

    def value(name: str) -> Any:
        given = getattr(request, name)
        return getattr(defaults, name) if given is None else given

    top_k, top_p, epsilon, temperature, seed = (value(name) for name in SAMPLING_FIELDS)
    settings = DecodeSettings(
        1, nbest, defaults.alpha, request.attention, True, top_k, float(top_p), float(epsilon), float(temperature), seed
    )
    try:  # the ranges of the decode config (one home), named as the request's fields
        validate_decode(DecodeConfig(**settings.decode_fields()))
    except ConfigError as exc:
        field = re.match(r"decode\.(\w+)", str(exc))
        raise RequestError(422, field.group(1) if field else "body", str(exc).replace("decode.", "")) from None
    for name, ok, bound in (
        ("temperature", temperature <= 100, "at most 100"),
        ("seed", seed <= MAX_SEED, "below 2^63"),
    ):
        if not ok:  # the server's own bounds
            raise RequestError(422, name, f"{name} must be {bound} on this server, not {value(name)}")
    if request.attention and (problem := attention_problem(1)):
        raise RequestError(422, "attention", problem)
    return settings


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes (declared or streamed)."""
    too_large = RequestError(413, "body", f"the request body exceeds {limit} bytes (--max-body-bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------- decoding
class Translator:
    """Decodes lists of sentences into the API's per-line entries; the batcher's `decode` function.

    `model` is a `Seq2Seq` or an `Ensemble` (`seq2seq.decoding.ensemble`). Attention weights come from forced decoding
    along each hypothesis (`inference.hypothesis_attention`), greedy or beam: one code path, the same weights greedy
    search saw (tests/test_alignment.py), at the cost of one more decoder pass when they are asked for.
    """

    def __init__(
        self, model: Any, tokenizer: Tokenizer, decode: DecodeConfig, shortlist: LexicalShortlist | None = None
    ) -> None:
        self.model, self.tokenizer, self.decode, self.shortlist = model, tokenizer, decode, shortlist
        self.device = next(model.parameters()).device
        self.has_attention = bool(model.has_attention)

    def config(self, settings: DecodeSettings) -> DecodeConfig:
        """The server's decode config with a request's settings."""
        return replace(self.decode, **settings.decode_fields())

    def attention_problem(self, beam_size: int) -> str | None:
        """Why attention weights cannot be returned at `beam_size` (None: they can)."""
        if not self.has_attention:
            return "this model has no attention (model.attention=none), so there are no weights to return"
        return None

    def check(self, settings: DecodeSettings, lines: list[Line]) -> None:
        """A `RequestError` (422) naming the entry whose prefix or phrases cannot be honoured, before the request
        joins a batch (where it would fail the batch's other requests too)."""
        sentences, prefixes, constraints = self.steering(lines)
        if prefixes is None and constraints is None:
            return
        cfg = self.config(settings)
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        ids = encode_sources(self.tokenizer, [sentences[i] for i in todo], MAX_SOURCE_TOKENS, None)
        try:
            encode_steering(self.tokenizer, ids, todo, cfg, prefixes, constraints, first_line=0)
        except SteeringError as exc:
            field = f"prefixes[{exc.line}]" if exc.kind == "prefix" else f"constraints[{exc.line}]"
            raise RequestError(422, field, f"{field}: {exc.problem}") from None

    @staticmethod
    def steering(lines: list[Line] | list[str]) -> tuple[list[str], list[str | None] | None, list[list[str]] | None]:
        """(texts, prefixes or None when there are none, phrases or None when there are none)."""
        steered = [line if isinstance(line, Line) else Line(line) for line in lines]
        prefixes = [line.prefix for line in steered] if any(line.prefix for line in steered) else None
        constraints = [list(line.phrases) for line in steered] if any(line.phrases for line in steered) else None
        return [line.text for line in steered], prefixes, constraints

    def runs(self, settings: DecodeSettings, lines: list[Line] | list[str]) -> bool:
        """Whether the lines can join a running batch (continuous batching): greedy or beam search without a
        shortlist, prefixes or required phrases, and without attention weights (those need forced decoding)."""
        _, prefixes, constraints = self.steering(lines)
        steered = prefixes is not None or constraints is not None
        cfg = self.config(settings)
        return not settings.attention and runs(cfg, self.shortlist is not None, steered)

    def running(self, settings: DecodeSettings) -> RunningEntries:
        """A running batch decoding with `settings` (`seq2seq.decoding.running`), giving the API's entries."""
        return RunningEntries(
            RunningTranslation(self.model, self.tokenizer, self.config(settings), self.device, MAX_SOURCE_TOKENS), self
        )

    def __call__(self, settings: DecodeSettings, lines: list[Line] | list[str]) -> list[dict[str, Any]]:
        cfg = self.config(settings)
        sentences, prefixes, constraints = self.steering(lines)
        hypotheses = translate_sentences(
            self.model,
            self.tokenizer,
            sentences,
            cfg,
            self.device,
            max_src_tokens=MAX_SOURCE_TOKENS,
            shortlist=self.shortlist,
            prefixes=prefixes,
            constraints=constraints,
        )
        if settings.attention:
            return self.with_forced_attention(sentences, hypotheses, cfg)
        return [{"hypotheses": [self.hypothesis(h) for h in hyps]} for hyps in hypotheses]

    def with_forced_attention(
        self, sentences: list[str], hypotheses: list[list[Hypothesis]], cfg: DecodeConfig
    ) -> list[dict[str, Any]]:
        """Every hypothesis with the weights of forced decoding along it (`inference.hypothesis_attention`)."""
        maps = hypothesis_attention(
            self.model, self.tokenizer, sentences, hypotheses, self.device, cfg.batch_size, MAX_SOURCE_TOKENS
        )
        return [
            {"hypotheses": [self.hypothesis(hyp, attention) for hyp, attention in zip(hyps, line_maps)]}
            if sentences[i].strip()
            else self.empty_entry()
            for i, (hyps, line_maps) in enumerate(zip(hypotheses, maps))
        ]

    def empty_entry(self) -> dict[str, Any]:
        """The entry of an empty line: one empty hypothesis, with an empty attention matrix."""
        return {"hypotheses": [self.hypothesis(Hypothesis([], 0.0, 0.0), AttentionMap([], [], torch.zeros(0, 0)))]}

    def hypothesis(self, hyp: Hypothesis, attention: AttentionMap | None = None) -> dict[str, Any]:
        """A hypothesis as JSON; with `attention`, its weights (rows: output pieces, columns: source pieces)."""
        out: dict[str, Any] = {
            "text": self.tokenizer.decode_tgt([hyp.tokens])[0],
            "score": round(hyp.score, 4),
            "log_prob": round(hyp.log_prob, 4),
        }
        if attention is not None:
            out["attention"] = {
                "source_pieces": attention.src_pieces,
                "output_pieces": attention.out_pieces,
                "weights": [[round(w, 4) for w in row] for row in attention.weights.tolist()],
            }
        return out


class RunningEntries:
    """A `RunningTranslation` that takes request lines and hands back the API's entries (`Translator.running`)."""

    def __init__(self, translation: RunningTranslation, translator: Translator) -> None:
        self.translation, self.translator = translation, translator

    def __len__(self) -> int:
        return len(self.translation)

    def add(self, lines: list[Line] | list[str], tags: list[Hashable]) -> None:
        self.translation.add(self.translator.steering(lines)[0], tags)

    def advance(self) -> list[tuple[Hashable, dict[str, Any]]]:
        return [
            (tag, {"hypotheses": [self.translator.hypothesis(h) for h in hyps]})
            for tag, hyps in self.translation.advance()
        ]


# ------------------------------------------------------------------------------------------ the app
def create_app(
    translator: Translator,
    info: dict[str, Any],
    limits: Limits = Limits(),
    defaults: DecodeSettings | None = None,
    max_batch_sentences: int = 32,
    max_wait_ms: float | None = None,
    decoders: int = 1,
    batching: str = "continuous",
) -> FastAPI:
    """The FastAPI app; its batcher starts and stops with the app's lifespan (uvicorn, or `with TestClient(app)`).

    `batching`: "continuous" (requests join the running batch between decoder steps, `serving.continuous`;
    a translator without running batches, such as the ONNX backend's, batches whole requests) or "dynamic"
    (requests that arrive within `max_wait_ms` share one decode, `serving.batcher`). `max_wait_ms` (None: the
    kind's default, `MAX_WAIT_MS`)."""
    defaults = defaults or DecodeSettings(1, 1, translator.decode.alpha, False)
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, not {batching!r}")
    continuous = batching == "continuous" and hasattr(translator, "running")
    if max_wait_ms is None:
        max_wait_ms = MAX_WAIT_MS["continuous" if continuous else "dynamic"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queued = limits.max_queued_sentences
        if continuous:
            batcher: ContinuousBatcher | DynamicBatcher = ContinuousBatcher(
                translator.runs, translator.running, translator, max_batch_sentences, max_wait_ms, queued, decoders
            )
        else:
            batcher = DynamicBatcher(translator, max_batch_sentences, max_wait_ms, queued, decoders)
        batcher.start()
        app.state.batcher = batcher
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    app = FastAPI(
        title="seq2seq",
        summary="Recurrent encoder-decoder translation: one entry per input line, n-best, attention.",
        lifespan=lifespan,
    )
    info = {**info, "limits": asdict(limits), "defaults": asdict(defaults)}
    info["batching"] = {
        "kind": "continuous" if continuous else "dynamic",
        "max_batch_sentences": max_batch_sentences,
        "max_wait_ms": max_wait_ms,
        "decoders": decoders,
    }
    info["features"] = {  # what the page offers
        "attention": translator.attention_problem(1) is None,
        "attention_with_beam": translator.attention_problem(2) is None,
    }
    _add_error_handlers(app)
    _add_translate_route(app, translator, limits, defaults)
    _add_other_routes(app, info)
    return app


def _error(status: int, message: str, field: str | None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405, ...
        return _error(exc.status_code, str(exc.detail), None)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in [
        (400, "invalid UTF-8 or malformed JSON"),
        (413, "the body is larger than --max-body-bytes"),
        (422, "a field has the wrong type or is beyond its limit"),
        (503, "too many sentences are waiting (--max-queued-sentences)"),
    ]
}


def _add_translate_route(app: FastAPI, translator: Translator, limits: Limits, defaults: DecodeSettings) -> None:
    schema = TranslateRequest.model_json_schema()
    body_doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    @app.post("/translate", response_model=TranslateResponse, responses=ERRORS, openapi_extra=body_doc)
    async def translate(request: Request) -> JSONResponse:
        """Translate a list of lines: exactly one entry per line, in order (an empty line gets an empty entry)."""
        body = await read_body(request, limits.max_body_bytes)
        lines, settings = parse_request(body, limits, defaults, translator.attention_problem, translator.tokenizer)
        translator.check(settings, lines)
        try:
            future = request.app.state.batcher.submit(settings, lines)
        except QueueFull as exc:
            raise RequestError(
                503, "text", f"the server is busy: {exc} (--max-queued-sentences); retry later"
            ) from None
        try:
            entries = await asyncio.wrap_future(future)
        except Exception as exc:  # logged by the batcher with its traceback
            return _error(500, f"decoding failed: {type(exc).__name__}: {exc}", None)
        return JSONResponse({"translations": entries, **asdict(settings)})


def _add_other_routes(app: FastAPI, info: dict[str, Any]) -> None:
    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness, and the batching counters: `batches` < `requests` when requests shared decodes."""
        batcher = getattr(request.app.state, "batcher", None)
        stats = batcher.stats().to_dict() if batcher is not None else {}
        return {"status": "ok", **stats}

    @app.get("/info")
    async def model_info() -> dict[str, Any]:
        """The model (cell, layers, sizes, attention), languages, vocabularies, parameters, recorded test BLEU,
        the request limits and the decode defaults."""
        return info

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
