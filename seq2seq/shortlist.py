"""Build a lexical shortlist from a parallel corpus and store it in a checkpoint (for `--shortlist`).

    python -m seq2seq.shortlist CHECKPOINT --src PATH/TO/train.de.gz --tgt PATH/TO/train.en.gz
        [--per-source 20] [--frequent 300] [--output PATH]

What a shortlist is and how search uses it: `seq2seq.decoding.lexicon`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from seq2seq.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.lexicon import FREQUENT, PER_SOURCE, build_shortlist
from seq2seq.files import read_argument

log = logging.getLogger("seq2seq.shortlist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seq2seq.shortlist",
        description="Build a lexical shortlist from a parallel corpus and store it in a checkpoint "
        "(for translate/evaluate --shortlist).",
    )
    parser.add_argument("checkpoint", help="the checkpoint file to add the shortlist to")
    parser.add_argument("--src", required=True, help="the training corpus's source side, one sentence per line")
    parser.add_argument("--tgt", required=True, help="its target side, line-aligned with --src")
    parser.add_argument(
        "--per-source", type=int, default=PER_SOURCE, help="candidates per source subword (default: %(default)s)"
    )
    parser.add_argument(
        "--frequent", type=int, default=FREQUENT, help="most frequent target subwords always in (default: %(default)s)"
    )
    parser.add_argument("--output", help="write the checkpoint with its shortlist here (default: in place)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        payload = load_checkpoint(args.checkpoint)
        tokenizer = Tokenizer.from_dict(payload["tokenizer"])
        src, tgt = read_argument("--src", args.src), read_argument("--tgt", args.tgt)
        if len(src) != len(tgt):
            raise ValueError(f"{args.src} has {len(src)} lines but {args.tgt} has {len(tgt)}")
        shortlist = build_shortlist(
            tokenizer.encode_src(src),
            tokenizer.encode_tgt(tgt),
            tokenizer.src_vocab_size,
            tokenizer.tgt_vocab_size,
            args.per_source,
            args.frequent,
        )
    except (CheckpointError, ValueError, KeyError) as exc:
        print(f"seq2seq.shortlist: {exc}", file=sys.stderr)
        return 2
    payload.pop("format_version", None)
    payload["shortlist"] = shortlist.to_dict()
    output = Path(args.output or args.checkpoint)
    save_checkpoint(output, payload)
    log.info(
        "%s: a shortlist of %d candidates per source subword and %d frequent target subwords, from %d sentence pairs",
        output,
        shortlist.translations.size(1),
        len(shortlist.frequent),
        len(src),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
