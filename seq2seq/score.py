"""Score given translations with a checkpoint (or an ensemble): how probable the model finds each one.

    python -m seq2seq.score CHECKPOINT [CHECKPOINT ...] --src FILE --hyp FILE [--json] [--batch-size N] [--device D]

Forced decoding (seq2seq.decoding.search.forced_decode): the model reads each source line and is fed the
hypothesis line's subword tokens, then EOS. Exactly one output line per input line, in order: the total
log-probability (EOS included), the average per token and the length in tokens (EOS included),
tab-separated; with --json, one JSON object per line, with the per-token log-probabilities as well.
An empty hypothesis scores EOS alone. Problems with the arguments (a missing file, line counts that
differ, a checkpoint that cannot be read) are one line on standard error and exit status 2. A reader that
closes standard output early (`| head -1`) ends it quietly, status 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError
from seq2seq.decoding.inference import score_sentences
from seq2seq.decoding.loading import MAX_SOURCE_TOKENS, load_for_decoding
from seq2seq.decoding.search import ForcedScore
from seq2seq.files import read_argument, stdout_may_close

log = logging.getLogger("seq2seq.score")


def format_score(scored: ForcedScore, as_json: bool = False) -> str:
    """One output line (without its newline): `total<TAB>average<TAB>length`, or a JSON object."""
    if as_json:
        return json.dumps(
            {
                "log_prob": scored.log_prob,
                "average": scored.average,
                "length": scored.length,
                "token_log_probs": scored.token_log_probs,
            }
        )
    return f"{scored.log_prob:.6f}\t{scored.average:.6f}\t{scored.length}"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seq2seq.score", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint",
        nargs="+",
        help="a best.pt / last.pt file, or a run folder (its checkpoints/best.pt); several score as an ensemble",
    )
    parser.add_argument("--src", required=True, help="source sentences, one per line")
    parser.add_argument("--hyp", required=True, help="the translations to score, line-aligned with --src")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--batch-size", type=int, help="sentences per batch (default: the checkpoint's decode.batch_size)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        src, hyp = read_argument("--src", args.src), read_argument("--hyp", args.hyp)
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    except ValueError as exc:
        print(f"seq2seq.score: {exc}", file=sys.stderr)
        return 2
    if len(src) != len(hyp):
        print(f"seq2seq.score: {args.src} has {len(src)} lines but {args.hyp} has {len(hyp)}", file=sys.stderr)
        return 2
    try:
        model, tokenizer, config, _, device, _ = load_for_decoding(args.checkpoint, args.device)
    except (CheckpointError, ConfigError, RuntimeError) as exc:
        print(f"seq2seq.score: {exc}", file=sys.stderr)
        return 2
    batch_size = args.batch_size or config.decode.batch_size
    log.info("scoring %d lines with %d model(s) on %s", len(src), len(args.checkpoint), device)
    scores = score_sentences(model, tokenizer, src, hyp, device, batch_size, max_src_tokens=MAX_SOURCE_TOKENS)
    sys.stdout.reconfigure(encoding="utf-8", newline="\n")  # type: ignore[union-attr]
    with stdout_may_close():  # `score ... | head -1` ends quietly
        for scored in scores:
            sys.stdout.write(format_score(scored, args.json) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
