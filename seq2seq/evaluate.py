"""Score a checkpoint on a source/reference file pair with sacrebleu BLEU and chrF.

python -m seq2seq.evaluate CHECKPOINT [CHECKPOINT ...] --src FILE --ref FILE [--beam-size N] [--json] [--output FILE]

CHECKPOINT is a best.pt / last.pt file, or a run folder (its checkpoints/best.pt), as for seq2seq.translate;
several checkpoints decode as an ensemble, and an export folder (python -m seq2seq.export) decodes with the
PyTorch-free translator (seq2seq.portable), greedy or beam search.
Every problem with an argument (a missing file, a folder, bytes that are not UTF-8, no CUDA for --device cuda)
is one line on standard error naming it, before any decoding.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, DecodeConfig
from seq2seq.data.corpus import ParallelCorpus
from seq2seq.decoding.loading import is_export, load_export, load_for_decoding
from seq2seq.decoding.steering import parse_constraints_line
from seq2seq.files import read_argument
from seq2seq.metrics import corpus_scores
from seq2seq.options import add_decode_arguments, decode_config
from seq2seq.results import SearchScores
from seq2seq.training.validation import search_bleu


def check_output(path: str) -> None:
    """Refuse an --output that cannot be written, before the translation, not after it."""
    where = Path(path)
    if where.is_dir():
        raise ValueError(f"--output {path}: is a folder, not a file")
    if not where.parent.is_dir():
        raise ValueError(f"--output {path}: no such folder {where.parent}")


def steering_files(args: argparse.Namespace, lines: int) -> tuple[list[str | None] | None, list[list[str]] | None]:
    """--prefixes and --constraints, read whole; ValueError when a file's line count is not the source's."""
    prefixes = constraints = None
    if args.prefixes:
        prefixes = [line or None for line in _lines(args.prefixes, "--prefixes", lines)]
    if args.constraints:
        constraints = [parse_constraints_line(line) for line in _lines(args.constraints, "--constraints", lines)]
    return prefixes, constraints


def _lines(path: str, option: str, expected: int) -> list[str]:
    found = read_argument(option, path)
    if len(found) != expected:
        raise ValueError(f"{path} ({option}) has {len(found)} lines but --src has {expected}")
    return found


def evaluate_export(
    args: argparse.Namespace, src: list[str], ref: list[str]
) -> tuple[SearchScores, list[str], DecodeConfig, tuple[str, str]]:
    """Scores, translations, decode settings and languages of an export folder (`loading.load_export`) on
    --src/--ref, decoded with the PyTorch-free translator and timed as `search_bleu` times a checkpoint."""
    translator, decode = load_export(args)
    start = time.monotonic()
    found = translator.translate(src, decode.beam_size, decode.nbest, decode.alpha, decode.batch_size)
    hyps = [texts[0] for texts in translator.detokenize(found)]
    seconds = time.monotonic() - start
    scores = SearchScores.measured(decode.beam_size, corpus_scores(hyps, ref), len(hyps), seconds)
    languages = translator.settings["languages"]
    return scores, hyps, decode, (languages["source"], languages["target"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq.evaluate", description=__doc__.split("\n\n")[0])
    add_decode_arguments(parser)
    parser.add_argument("--src", required=True, help="source sentences, one per line")
    parser.add_argument("--ref", required=True, help="reference translations, line-aligned with --src")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--output", help="also write the translations to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        src, ref = read_argument("--src", args.src), read_argument("--ref", args.ref)
        if args.output:
            check_output(args.output)
    except ValueError as exc:
        print(f"seq2seq.evaluate: {exc}", file=sys.stderr)
        return 2
    if len(src) != len(ref):
        print(f"seq2seq.evaluate: {args.src} has {len(src)} lines but {args.ref} has {len(ref)}", file=sys.stderr)
        return 2
    try:
        if is_export(args.checkpoint):
            scores, hyps, decode, languages = evaluate_export(args, src, ref)
        else:
            model, tokenizer, config, shortlist, device, _ = load_for_decoding(
                args.checkpoint, args.device, args.quantize, args.shortlist
            )
            decode = decode_config(args, config.decode)
            languages = (config.data.src_lang, config.data.tgt_lang)
            if args.target_lang is not None:
                src = tokenizer.with_target_language(src, args.target_lang)
            prefixes, constraints = steering_files(args, len(src))
            scores, hyps = search_bleu(
                model,
                tokenizer,
                ParallelCorpus(src, ref),
                decode,
                device,
                sys.stderr.isatty(),
                shortlist,
                prefixes,
                constraints,
            )
    except (CheckpointError, ConfigError, RuntimeError, ValueError) as exc:  # SteeringError too: names its line
        print(f"seq2seq.evaluate: {exc}", file=sys.stderr)  # ExportError is a ValueError
        return 2
    if args.output:
        Path(args.output).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    if scores.bleu < 1.0:  # most often the two files the wrong way round, or another language pair's model
        src_lang, tgt_lang = languages
        print(
            f"seq2seq.evaluate: BLEU {scores.bleu:.2f} is under 1: is --src {args.src} in {src_lang} and --ref "
            f"{args.ref} in {tgt_lang}, the model's languages ({src_lang}->{tgt_lang})? Swapped files score near 0.",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({k: v for k, v in {**asdict(scores), "sentences": len(src)}.items() if v is not None}))
    else:
        print(
            f"BLEU = {scores.bleu:.2f}  chrF = {scores.chrf:.2f}  TER = {scores.ter:.2f}  "
            f"(beam {decode.beam_size}, {len(src)} sentences, "
            f"{scores.sentences_per_sec:.1f} sent/s)"
        )
        print(f"signature: {scores.bleu_signature}")
        print(f"signature: {scores.ter_signature}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
