"""Translate standard input with a checkpoint: exactly one output line per input line, in order.

    python -m seq2seq.translate CHECKPOINT [CHECKPOINT ...] [--beam-size N] [--nbest K] [--batch-size B]
        [--alignment [pieces|words]] [--device D] [--quantize int8] [--shortlist] < in > out

CHECKPOINT is a best.pt / last.pt file written by seq2seq.train, or a run folder (outputs/DATE/TIME),
which stands for its checkpoints/best.pt; several checkpoints decode as an ensemble (seq2seq.ensemble).
Input is read and translated in chunks, so a large file streams. With --nbest K > 1, each input line
gives one output line holding the K hypotheses separated by " ||| ". With --alignment, each hypothesis
is followed by " ||| " and its hard alignment (`i-j` pairs, seq2seq.alignment). Logs go to standard
error only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TextIO

from seq2seq.alignment import format_alignment, hard_alignment, word_alignment
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, DecodeConfig, validate_decode
from seq2seq.device import resolve_device
from seq2seq.ensemble import Translator, load_models
from seq2seq.files import strip_line_end
from seq2seq.inference import attention_for, translate_sentences
from seq2seq.quantize import QUANTIZATIONS, quantize_int8
from seq2seq.results import RunResults
from seq2seq.search import Hypothesis
from seq2seq.shortlist import LexicalShortlist, shortlist_from_checkpoint
from seq2seq.tokenizer import Tokenizer

log = logging.getLogger("seq2seq.translate")

NBEST_SEPARATOR = " ||| "
MAX_SOURCE_TOKENS = 1000  # longer inputs are truncated (and still get their one output line)


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """Decoding options shared by translate and evaluate (defaults: the checkpoint's decode config)."""
    parser.add_argument(
        "checkpoint",
        nargs="+",
        help="a best.pt / last.pt file from seq2seq.train, or a run folder (its checkpoints/best.pt); "
        "several decode as an ensemble",
    )
    parser.add_argument("--beam-size", type=int, help="1 = greedy (default: the checkpoint's decode.beam_size)")
    parser.add_argument("--alpha", type=float, help="length penalty exponent ((5+len)/6)^alpha")
    parser.add_argument("--max-len-a", type=float, help="max output length = a * source length + b")
    parser.add_argument("--max-len-b", type=int)
    parser.add_argument("--batch-size", type=int, help="sentences per decoding batch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: the decoder's matrix products with 8-bit weights on the CPU (faster; docs/decoding.md)",
    )
    parser.add_argument(
        "--shortlist",
        action="store_true",
        help="search each sentence over the target subwords its source makes likely (the lexical shortlist "
        "stored in the (first) checkpoint by seq2seq.shortlist; faster; docs/decoding.md)",
    )


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file `path` names: itself, or for a run folder its test model (results.json's
    `checkpoint`: `best.pt`, or `averaged.pt` when averaging won), else its `checkpoints/best.pt` (logged)."""
    path = Path(path)
    if not path.is_dir():
        return path  # a file, or missing: load_checkpoint says which
    candidates = [path / "checkpoints" / "best.pt", path / "best.pt"]
    with contextlib.suppress(OSError, ValueError):  # a finished run names its test model (maybe averaged.pt)
        candidates.insert(0, Path(RunResults.load(path / "results.json").checkpoint))
    for candidate in candidates:
        if candidate.is_file():
            log.info("%s is a folder: using %s", path, candidate)
            return candidate
    raise CheckpointError(f"{path} is a folder, not a checkpoint file; pass e.g. {path / 'checkpoints' / 'best.pt'}")


def load_for_decoding(args: argparse.Namespace, **extra: int | None):  # noqa: ANN201
    """Model (an `Ensemble` for several checkpoints), tokenizer and the decode config (the first
    checkpoint's, overridden by the command line)."""
    device = resolve_device(args.device, "--device")
    model, tokenizer, config = load_models([checkpoint_path(c) for c in args.checkpoint], device)
    if args.quantize == "int8":
        quantize_int8(model)
        log.info("decoding with int8 weights in the decoder (--quantize int8)")
    if len(args.checkpoint) > 1:
        log.info("decoding with an ensemble of %d models", len(args.checkpoint))
    overrides = {
        "beam_size": args.beam_size,
        "alpha": args.alpha,
        "max_len_a": args.max_len_a,
        "max_len_b": args.max_len_b,
        "batch_size": args.batch_size,
        **extra,
    }
    decode = replace(config.decode, **{k: v for k, v in overrides.items() if v is not None})
    if decode.nbest > decode.beam_size:
        decode = replace(decode, beam_size=decode.nbest) if args.beam_size is None else decode
    validate_decode(decode)
    return model, tokenizer, config, decode


def load_shortlist(args: argparse.Namespace) -> LexicalShortlist | None:
    """With `--shortlist`, the shortlist stored in the first checkpoint (an ensemble's members share the
    vocabularies); `CheckpointError` if it has none."""
    return shortlist_from_checkpoint(checkpoint_path(args.checkpoint[0])) if args.shortlist else None


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


def translate_stream(
    model: Translator,
    tokenizer: Tokenizer,
    decode: DecodeConfig,
    source: BinaryIO,
    target: TextIO,
    chunk_size: int = 1000,
    progress: bool = False,
    alignment: str | None = None,
    shortlist: LexicalShortlist | None = None,
) -> int:
    """Translate `source` line by line into `target`: one output line per input line. Returns the count.

    `alignment` ("pieces" or "words"): each hypothesis is followed by " ||| " and its hard alignment.
    `shortlist`: every sentence searches over its own candidate target ids only.
    """
    device = next(model.parameters()).device
    count = 0
    for chunk in read_chunks(source, chunk_size):
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
        )
        links = alignments(model, tokenizer, chunk, hypotheses, decode, alignment) if alignment else None
        for line, hyps in enumerate(hypotheses):
            fields = [" ".join(t.splitlines()) for t in tokenizer.decode_tgt([h.tokens for h in hyps])]
            if links is not None:
                fields = [field for pair in zip(fields, links[line]) for field in pair]
            target.write(NBEST_SEPARATOR.join(fields) + "\n")
        target.flush()
        count += len(chunk)
    return count


def alignments(
    model: Translator,
    tokenizer: Tokenizer,
    sources: list[str],
    hypotheses: list[list[Hypothesis]],
    decode: DecodeConfig,
    level: str = "pieces",
) -> list[list[str]]:
    """The hard alignment (`i-j` pairs) of every hypothesis of every source, at the "pieces" or "words" level.

    The attention comes from forced decoding of each hypothesis (`inference.attention_for`); an empty
    source line, which translate_sentences leaves to the model-free empty hypothesis, aligns nothing.
    """
    pairs = [(line, k) for line, hyps in enumerate(hypotheses) for k in range(len(hyps)) if sources[line].strip()]
    maps = attention_for(
        model,
        tokenizer,
        [sources[line] for line, _ in pairs],
        [hypotheses[line][k].tokens for line, k in pairs],
        next(model.parameters()).device,
        decode.batch_size,
        max_src_tokens=MAX_SOURCE_TOKENS,
        first_line=None,  # translate_sentences has warned about long lines already
    )
    result = [["" for _ in hyps] for hyps in hypotheses]
    for (line, k), attention in zip(pairs, maps):
        links = hard_alignment(attention.weights)
        if level == "words":
            links = word_alignment(links, attention.src_pieces[:-1], attention.out_pieces[:-1])
        result[line][k] = format_alignment(links)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq.translate", description=__doc__.split("\n\n")[0])
    add_decode_arguments(parser)
    parser.add_argument("--nbest", type=int, help="hypotheses per line, joined by ' ||| ' (needs beam size >= K)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="lines read and translated at a time")
    parser.add_argument(
        "--alignment",
        nargs="?",
        const="pieces",
        choices=["pieces", "words"],
        help="append ' ||| ' and the hard alignment from attention to each hypothesis: source-output index "
        "pairs i-j of subword pieces (the default) or of words",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        model, tokenizer, _, decode = load_for_decoding(args, nbest=args.nbest)
        shortlist = load_shortlist(args)
    except (CheckpointError, ConfigError, RuntimeError) as exc:
        print(f"seq2seq.translate: {exc}", file=sys.stderr)
        return 2
    if args.alignment and not model.has_attention:
        which = args.checkpoint[0] if len(args.checkpoint) == 1 else "a model of the ensemble"
        print(
            f"seq2seq.translate: --alignment needs attention weights, but {which} has none (model.attention=none)",
            file=sys.stderr,
        )
        return 2
    sys.stdout.reconfigure(encoding="utf-8", errors="replace", newline="\n")  # type: ignore[union-attr]
    log.info("translating with beam size %d on %s", decode.beam_size, next(model.parameters()).device)
    count = translate_stream(
        model,
        tokenizer,
        decode,
        sys.stdin.buffer,
        sys.stdout,
        args.chunk_size,
        progress=sys.stderr.isatty(),
        alignment=args.alignment,
        shortlist=shortlist,
    )
    log.info("translated %d lines", count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
