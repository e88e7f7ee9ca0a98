"""Translate standard input with a checkpoint: exactly one output line per input line, in order.

    python -m seq2seq.translate CHECKPOINT [CHECKPOINT ...] [--beam-size N] [--nbest K] [--batch-size B]
        [--sampling [--top-k K] [--top-p P] [--epsilon E] [--temperature T] [--seed S]]
        [--alignment [pieces|words]] [--device D] [--quantize int8] [--shortlist]
        [--constraints FILE] [--prefixes FILE] [--jsonl] [--target-lang LANG] < in > out

CHECKPOINT is a best.pt / last.pt file written by seq2seq.train, or a run folder (outputs/DATE/TIME),
which stands for its checkpoints/best.pt; several checkpoints decode as an ensemble (seq2seq.decoding.ensemble).
Input is read and translated in chunks (--chunk-size, 1000 lines), so a large file streams; typed at a terminal,
each line is translated as soon as it is entered (Ctrl-D ends). With --nbest K > 1, each input line
gives one output line holding the K hypotheses separated by " ||| ". With --sampling each output is drawn
from the model's distribution (back-translation), --nbest K gives K independent samples, and the same
--seed gives the same samples whatever the batching (seq2seq.decoding.sampling). With --alignment, each hypothesis
is followed by " ||| " and its hard alignment (`i-j` pairs, seq2seq.decoding.alignment). --constraints FILE
(tab-separated phrases per line) makes every output hold its line's phrases, --prefixes FILE start with its
line's text; --jsonl reads both from JSON input lines (seq2seq.decoding.steering). Logs go to standard
error only. A reader that closes standard output early (`| head -1`) ends translate quietly, status 0.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Iterator
from itertools import islice
from typing import BinaryIO, TextIO

from seq2seq.checkpoint import CheckpointError, is_text_file
from seq2seq.config import ConfigError, DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.alignment import format_alignment, hard_alignment, word_alignment
from seq2seq.decoding.ensemble import DecodingModel
from seq2seq.decoding.inference import hypothesis_attention, translate_sentences
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.decoding.loading import MAX_SOURCE_TOKENS, is_export, load_export, load_for_decoding
from seq2seq.decoding.search import Hypothesis
from seq2seq.decoding.steering import SteeringError, parse_constraints_line, parse_request_line
from seq2seq.files import stdout_may_close, strip_line_end
from seq2seq.options import add_decode_arguments, decode_config

log = logging.getLogger("seq2seq.translate")

NBEST_SEPARATOR = " ||| "
CHUNK_SIZE = 1000  # lines read and translated at a time from a file or a pipe (1 from a terminal)
TERMINAL_HINT = (  # on standard error before translate reads a terminal; {command}: the command line as typed
    "seq2seq.translate: reading sentences from the terminal, one per line; Ctrl-D ends "
    "(pipe a file: {command} < input.txt)"
)


def read_chunks(stream: BinaryIO, size: int) -> Iterator[list[str]]:
    """Lines of a byte stream, `size` at a time, without their line ending.

    Only b"\n" ends a line (a stray "\r" or other control character stays inside its line), and bytes
    that are not UTF-8 are replaced by U+FFFD with a warning, so the line count is always the input's.
    """

    def lines() -> Iterator[str]:
        for number, raw in enumerate(stream, start=1):
            raw = strip_line_end(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                log.warning("input line %d: invalid UTF-8 (%s); undecodable bytes replaced", number, exc.reason)
                yield raw.decode("utf-8", errors="replace")

    source = lines()
    while chunk := list(islice(source, size)):
        yield chunk


class SteeringFiles:
    """--constraints FILE and --prefixes FILE, read line by line alongside the input."""

    def __init__(self, constraints: str | None = None, prefixes: str | None = None) -> None:
        self.paths = {name: path for name, path in (("constraints", constraints), ("prefixes", prefixes)) if path}
        self.files = {name: open(path, encoding="utf-8", newline="\n") for name, path in self.paths.items()}  # noqa: SIM115

    def take(self, count: int, first_line: int) -> tuple[list[str | None] | None, list[list[str]] | None]:
        """The prefixes and phrases of the next `count` input lines (None for a file not given)."""
        lines = {name: [self._line(name, first_line + i) for i in range(count)] for name in self.files}
        prefixes = [line.rstrip("\r\n") or None for line in lines["prefixes"]] if "prefixes" in lines else None
        constraints = None
        if "constraints" in lines:
            constraints = [parse_constraints_line(line) for line in lines["constraints"]]
        return prefixes, constraints

    def _line(self, name: str, number: int) -> str:
        try:
            line = self.files[name].readline()
        except UnicodeDecodeError as exc:
            raise SteeringError(number, f"{self.paths[name]} is not UTF-8 there ({exc.reason})") from None
        if not line:
            raise SteeringError(number, f"{self.paths[name]} has only {number - 1} lines; the input has more")
        return line

    def finish(self, count: int) -> None:
        """After the input's `count` lines: a file with more lines than the input is an error."""
        for name, f in self.files.items():
            if f.readline():
                raise SteeringError(count + 1, f"{self.paths[name]} has more lines than the input ({count})")
            f.close()


def translate_stream(
    model: DecodingModel,
    tokenizer: Tokenizer,
    decode: DecodeConfig,
    source: BinaryIO,
    target: TextIO,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    alignment: str | None = None,
    shortlist: LexicalShortlist | None = None,
    target_lang: str | None = None,
    steering: SteeringFiles | None = None,
    jsonl: bool = False,
) -> int:
    """Translate `source` line by line into `target`: one output line per input line. Returns the count.

    `alignment` ("pieces" or "words"): each hypothesis is followed by " ||| " and its hard alignment.
    `shortlist`: every sentence searches over its own candidate target ids only.
    `target_lang`: a multilingual model's output language (`Tokenizer.with_target_language`).
    `steering`: prefixes and required phrases from files; `jsonl`: every input line is a JSON object with
    "src" and maybe "constraints" and "prefix". A problem with either raises `SteeringError` naming the line;
    the lines before its chunk have been written.
    """
    device = next(model.parameters()).device
    count = 0
    for chunk in read_chunks(source, chunk_size):
        prefixes: list[str | None] | None = None
        constraints: list[list[str]] | None = None
        if jsonl:
            records = [parse_request_line(line, count + 1 + i) for i, line in enumerate(chunk)]
            chunk = [src for src, _, _ in records]
            prefixes, constraints = [p for _, p, _ in records], [c for _, _, c in records]
        elif steering is not None:
            prefixes, constraints = steering.take(len(chunk), count + 1)
        if target_lang is not None:
            chunk = tokenizer.with_target_language(chunk, target_lang)
        hypotheses = translate_sentences(
            model,
            tokenizer,
            chunk,
            decode,
            device,
            max_src_tokens=MAX_SOURCE_TOKENS,
            progress=progress,
            first_line=count + 1,
            shortlist=shortlist,
            prefixes=prefixes,
            constraints=constraints,
        )
        links = alignments(model, tokenizer, chunk, hypotheses, decode, alignment) if alignment else None
        for line, hyps in enumerate(hypotheses):
            fields = [" ".join(t.splitlines()) for t in tokenizer.decode_tgt([h.tokens for h in hyps])]
            if links is not None:
                fields = [field for pair in zip(fields, links[line]) for field in pair]
            target.write(NBEST_SEPARATOR.join(fields) + "\n")
        target.flush()
        count += len(chunk)
    if steering is not None:
        steering.finish(count)
    return count


def alignments(
    model: DecodingModel,
    tokenizer: Tokenizer,
    sources: list[str],
    hypotheses: list[list[Hypothesis]],
    decode: DecodeConfig,
    level: str = "pieces",
) -> list[list[str]]:
    """The hard alignment (`i-j` pairs) of every hypothesis of every source, at the "pieces" or "words" level,
    from the attention of forced decoding along it (`inference.hypothesis_attention`); an empty source line
    aligns nothing."""
    device = next(model.parameters()).device
    maps = hypothesis_attention(model, tokenizer, sources, hypotheses, device, decode.batch_size, MAX_SOURCE_TOKENS)
    result = [["" for _ in hyps] for hyps in hypotheses]
    for line, line_maps in enumerate(maps):
        for k, attention in enumerate(line_maps):
            if attention is None:
                continue
            links = hard_alignment(attention.weights)
            if level == "words":
                links = word_alignment(links, attention.src_pieces[:-1], attention.out_pieces[:-1])
            result[line][k] = format_alignment(links)
    return result


def stdin_is_terminal() -> bool:
    """Whether standard input is a terminal (someone types the sentences), not a file or a pipe."""
    isatty = getattr(sys.stdin, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def input_given_as_checkpoint(checkpoints: list[str], argv: list[str]) -> str | None:
    """The one-line error for a text file among the checkpoints after the first (`translate CK input.de`: the
    input file where a checkpoint is expected), with the command that reads it from standard input; else None."""
    text = next((path for path in checkpoints[1:] if is_text_file(path)), None)
    if text is None:
        return None
    rest = list(argv)
    if text in rest:
        rest.remove(text)
    command = shlex.join(["python", "-m", "seq2seq.translate", *rest])
    return f"{text} is a text file, not a checkpoint; translate reads standard input: {command} < {shlex.quote(text)}"


def translate_with_export(args: argparse.Namespace) -> int:
    """An export folder (`python -m seq2seq.export`) instead of a checkpoint: `seq2seq.portable` translates,
    with the options that apply (`loading.load_export`); the others are refused."""
    from seq2seq.portable.translator import ExportError, translate_file

    chunk_size = args.chunk_size or (1 if stdin_is_terminal() else CHUNK_SIZE)
    try:
        translator, decode = load_export(args)
        sys.stdout.reconfigure(encoding="utf-8", errors="replace", newline="\n")  # type: ignore[union-attr]
        with stdout_may_close():
            count = translate_file(
                translator,
                sys.stdin.buffer,
                sys.stdout,
                decode.beam_size,
                decode.nbest,
                decode.alpha,
                decode.batch_size,
                chunk_size,
            )
    except (ExportError, ConfigError, OSError, ValueError) as exc:
        print(f"seq2seq.translate: {exc}", file=sys.stderr)
        return 2
    log.info("translated %d lines with the export %s (onnxruntime)", count, args.checkpoint[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seq2seq.translate",
        description=__doc__.split("\n\n")[0],
        epilog="The sentences come from standard input, one per line: python -m seq2seq.translate CHECKPOINT "
        "< input.txt > output.txt. Typed at a terminal, each line is translated as soon as it is entered; "
        "Ctrl-D ends.",
    )
    add_decode_arguments(parser)
    parser.add_argument(
        "--nbest",
        type=int,
        help="hypotheses per line, joined by ' ||| ' (widens the beam to K unless --beam-size is given; "
        "with --sampling: K samples)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        help=f"lines read and translated at a time (default: {CHUNK_SIZE}, so a large file streams; 1 when standard "
        "input is a terminal, so each typed line is translated at once)",
    )
    parser.add_argument(
        "--jsonl",
        action="store_true",
        help='each input line is a JSON object {"src": ..., "constraints": [phrases], "prefix": text} (the last two '
        "optional); the output stays one plain line per input line",
    )
    parser.add_argument(
        "--alignment",
        nargs="?",
        const="pieces",
        choices=["pieces", "words"],
        help="append ' ||| ' and the hard alignment from attention to each hypothesis: source-output index "
        "pairs i-j of subword pieces (the default) or of words",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    if args.chunk_size is not None and args.chunk_size < 1:
        print(f"seq2seq.translate: --chunk-size must be at least 1, got {args.chunk_size}", file=sys.stderr)
        return 2
    if is_export(args.checkpoint):
        return translate_with_export(args)
    mistake = input_given_as_checkpoint(args.checkpoint, argv)
    if mistake is not None:
        print(f"seq2seq.translate: {mistake}", file=sys.stderr)
        return 2
    try:
        model, tokenizer, config, shortlist, *_ = load_for_decoding(
            args.checkpoint, args.device, args.quantize, args.shortlist
        )
        decode = decode_config(args, config.decode, nbest=args.nbest)
        if args.target_lang is not None:
            tokenizer.with_target_language([], args.target_lang)  # an unknown language: refused before reading input
        if args.jsonl and (args.constraints or args.prefixes):
            raise ValueError("--jsonl carries the constraints and prefixes in the input; drop --constraints/--prefixes")
        steering = SteeringFiles(args.constraints, args.prefixes) if args.constraints or args.prefixes else None
    except (CheckpointError, ConfigError, RuntimeError, ValueError, OSError) as exc:
        print(f"seq2seq.translate: {exc}", file=sys.stderr)
        return 2
    if args.alignment and not model.has_attention:
        which = args.checkpoint[0] if len(args.checkpoint) == 1 else "a model of the ensemble"
        print(
            f"seq2seq.translate: --alignment needs attention weights, but {which} has none (model.attention=none)",
            file=sys.stderr,
        )
        return 2
    interactive = stdin_is_terminal()
    chunk_size = args.chunk_size or (1 if interactive else CHUNK_SIZE)
    sys.stdout.reconfigure(encoding="utf-8", errors="replace", newline="\n")  # type: ignore[union-attr]
    log.info("translating with beam size %d on %s", decode.beam_size, next(model.parameters()).device)
    if interactive:
        command = shlex.join(["python", "-m", "seq2seq.translate", *argv])
        print(TERMINAL_HINT.format(command=command), file=sys.stderr, flush=True)
    with stdout_may_close():
        try:
            count = translate_stream(
                model,
                tokenizer,
                decode,
                sys.stdin.buffer,
                sys.stdout,
                chunk_size,
                progress=sys.stderr.isatty() and not interactive,
                alignment=args.alignment,
                shortlist=shortlist,
                target_lang=args.target_lang,
                steering=steering,
                jsonl=args.jsonl,
            )
        except SteeringError as exc:
            print(f"seq2seq.translate: {exc}", file=sys.stderr)
            return 2
        log.info("translated %d lines", count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
