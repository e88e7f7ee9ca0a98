"""Score a checkpoint on a source/reference file pair with sacrebleu BLEU and chrF.

python -m seq2seq.evaluate CHECKPOINT --src FILE --ref FILE [--beam-size N] [--json] [--output FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import time
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError
from seq2seq.inference import best_strings, translate_sentences
from seq2seq.metrics import score
from seq2seq.translate import add_decode_arguments, load_for_decoding, strip_line_end


def read_lines(path: str) -> list[str]:
    """One sentence per line (UTF-8; `.gz` allowed), split the way `seq2seq.translate` splits its input.

    Only "\n" ends a line (a trailing "\r" is dropped, a lone one stays inside its line), so
    `evaluate --src F` translates exactly the lines `translate < F` would. Bytes that are not UTF-8 are
    an error naming the file and line: a reference cannot be scored with replaced characters.
    """
    opener = gzip.open if path.endswith(".gz") else open
    lines = []
    with opener(path, "rb") as f:  # type: ignore[operator]
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(strip_line_end(raw).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not UTF-8 ({exc.reason})") from None
    return lines


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
        src, ref = read_lines(args.src), read_lines(args.ref)
    except (OSError, ValueError) as exc:
        print(f"seq2seq.evaluate: {exc}", file=sys.stderr)
        return 2
    if len(src) != len(ref):
        print(f"seq2seq.evaluate: {args.src} has {len(src)} lines but {args.ref} has {len(ref)}", file=sys.stderr)
        return 2
    try:
        model, tokenizer, _, decode = load_for_decoding(args)
    except (CheckpointError, ConfigError, RuntimeError) as exc:
        print(f"seq2seq.evaluate: {exc}", file=sys.stderr)
        return 2
    device = next(model.parameters()).device
    start = time.monotonic()
    hyps = best_strings(
        tokenizer, translate_sentences(model, tokenizer, src, decode, device, progress=sys.stderr.isatty())
    )
    seconds = time.monotonic() - start
    if args.output:
        Path(args.output).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = score(hyps, ref)
    if args.json:
        print(
            json.dumps(
                {
                    "beam_size": decode.beam_size,
                    **scores.to_dict(),
                    "sentences": len(src),
                    "sentences_per_sec": round(len(src) / seconds, 2),
                }
            )
        )
    else:
        print(
            f"BLEU = {scores.bleu:.2f}  chrF = {scores.chrf:.2f}  (beam {decode.beam_size}, {len(src)} sentences, "
            f"{len(src) / seconds:.1f} sent/s)"
        )
        print(f"signature: {scores.bleu_signature}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
