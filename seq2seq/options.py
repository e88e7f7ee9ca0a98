"""Command-line options shared by the decoding commands (translate, evaluate): the checkpoints and how to
search with them. The defaults come from the (first) checkpoint's decode config."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

from seq2seq.config import ConfigError, DecodeConfig, validate_decode
from seq2seq.model.quantize import QUANTIZATIONS


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoints and the decoding options (defaults: the checkpoint's decode config)."""
    parser.add_argument(
        "checkpoint",
        nargs="+",
        help="a best.pt / last.pt file from seq2seq.train, or a run folder (its checkpoints/best.pt); "
        "several decode as an ensemble",
    )
    parser.add_argument("--beam-size", type=int, help="1 = greedy (default: the checkpoint's decode.beam_size)")
    parser.add_argument("--alpha", type=float, help="length penalty exponent ((5+len)/6)^alpha")
    parser.add_argument(
        "--coverage-penalty",
        type=float,
        metavar="BETA",
        help="beam search: rank hypotheses that left source words unattended lower (GNMT's beta; 0: off)",
    )
    parser.add_argument("--max-len-a", type=float, help="max output length = a * source length + b")
    parser.add_argument("--max-len-b", type=int)
    parser.add_argument("--batch-size", type=int, help="sentences per decoding batch")
    sampling = parser.add_argument_group(
        "sampling", "draw each output instead of searching for the best one (back-translation; docs/decoding.md)"
    )
    sampling.add_argument(
        "--sampling", action="store_true", default=None, help="draw each token from the model's distribution"
    )
    sampling.add_argument("--top-k", type=int, help="draw from the k most probable tokens only (0: all; 1: greedy)")
    sampling.add_argument("--top-p", type=float, help="draw from the fewest most probable tokens whose mass reaches p")
    sampling.add_argument("--epsilon", type=float, help="never draw a token whose probability is below this")
    sampling.add_argument("--temperature", type=float, help="divides the log-probabilities (< 1 sharper, > 1 flatter)")
    sampling.add_argument(
        "--seed", type=int, help="with each source sentence, decides its samples, whatever the batching (default: 0)"
    )
    steering = parser.add_argument_group(
        "steering", "outputs that hold given phrases or start with given text (docs/decoding.md#steering)"
    )
    steering.add_argument(
        "--constraints",
        metavar="FILE",
        help="required phrases: line N holds input line N's phrases, separated by tabs (an empty line: none); "
        "every output holds them, on word boundaries (constrained beam search)",
    )
    steering.add_argument(
        "--prefixes",
        metavar="FILE",
        help="forced prefixes: line N is the text input line N's output starts with (an empty line: none)",
    )
    parser.add_argument(
        "--target-lang",
        metavar="LANG",
        help="a multilingual model (data.target_tags): translate into LANG (each line gets the tag <2LANG> first)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: the decoder's matrix products with 8-bit weights on the CPU (faster at the same BLEU; on a CPU "
        "the fastest greedy search is --quantize int8, the fastest beam search --quantize int8 --shortlist: "
        "docs/benchmarks.md#decoding-speed)",
    )
    parser.add_argument(
        "--shortlist",
        action="store_true",
        help="search each sentence over the target subwords its source makes likely (the lexical shortlist "
        "stored in the (first) checkpoint by seq2seq.shortlist; faster; docs/decoding.md)",
    )


def decode_config(args: argparse.Namespace, defaults: DecodeConfig, **extra: int | None) -> DecodeConfig:
    """`defaults` (the checkpoint's decode config) overridden by the command line; an n-best list longer
    than the beam widens the beam unless --beam-size was given; --sampling searches no beam (beam size 1
    unless --beam-size says otherwise, which is then an error). Raises `ConfigError` for bad values."""
    overrides = {
        "beam_size": args.beam_size,
        "alpha": args.alpha,
        "coverage_penalty": args.coverage_penalty,
        "max_len_a": args.max_len_a,
        "max_len_b": args.max_len_b,
        "batch_size": args.batch_size,
        "sampling": args.sampling,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "epsilon": args.epsilon,
        "temperature": args.temperature,
        "seed": args.seed,
        **extra,
    }
    decode = replace(defaults, **{k: v for k, v in overrides.items() if v is not None})
    if decode.sampling and args.beam_size is None:
        decode = replace(decode, beam_size=1)
    elif decode.nbest > decode.beam_size and args.beam_size is None:
        decode = replace(decode, beam_size=decode.nbest)
    try:
        validate_decode(decode)
    except ConfigError as error:  # name the options the user typed: decode.top_p -> --top-p
        raise ConfigError(re.sub(r"decode\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), str(error))) from None
    return decode
