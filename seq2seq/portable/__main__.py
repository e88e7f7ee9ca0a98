"""`python -m seq2seq.portable FOLDER [--beam-size K] [--nbest N] [--alpha A] [--batch-size B] [--threads T]
< input > output`: translate standard input with an export folder, one output line per input line (n-best
joined by " ||| "), without PyTorch. Problems with the folder or the options are one line, exit status 2."""

from __future__ import annotations

import argparse
import sys

from seq2seq.portable.translator import ExportedTranslator, ExportError, translate_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq.portable", description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="an export folder from python -m seq2seq.export")
    parser.add_argument("--beam-size", type=int, help="1 = greedy (default: the export's decode.beam_size)")
    parser.add_argument("--nbest", type=int, help="hypotheses per line, joined by ' ||| '")
    parser.add_argument("--alpha", type=float, help="length penalty exponent")
    parser.add_argument("--batch-size", type=int, help="sentences per batch")
    parser.add_argument("--threads", type=int, help="onnxruntime threads per session (default: its own)")
    args = parser.parse_args(argv)
    for name in ("beam_size", "nbest", "batch_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            print(f"seq2seq.portable: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        translator = ExportedTranslator(args.folder, threads=args.threads)
    except (ExportError, OSError) as exc:
        print(f"seq2seq.portable: {exc}", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(encoding="utf-8", errors="replace", newline="\n")  # type: ignore[union-attr]
    try:
        options = (args.beam_size, args.nbest, args.alpha, args.batch_size)
        translate_file(translator, sys.stdin.buffer, sys.stdout, *options)
    except ValueError as exc:
        print(f"seq2seq.portable: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
