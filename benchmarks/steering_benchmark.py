"""Steered decoding measured on a test set: required phrases, forced prefixes and the coverage penalty.

    python benchmarks/steering_benchmark.py PATH/TO/averaged.pt --src PATH/TO/test_2016_flickr.de.gz \
        --ref PATH/TO/test_2016_flickr.en.gz [--beam-size 5] [--seed 1] [--repeats 2] [--out steering.json]

Constraints are drawn from the references, as in the literature's terminology experiments: for every
sentence, 1 (and, in a second run, 2) reference words or bigrams that the unconstrained beam output lacks
(on word boundaries), chosen with a fixed --seed; a sentence whose output already holds every candidate
gets none. The report: the share of constraints that appear in the detokenized outputs (as written, on
word boundaries), BLEU, chrF and TER with and without them, and sentences/s (the median of --repeats,
each run timed alone, the unconstrained search in the same repeats). Prefixes: the first third of each
reference's words is forced; every output must start with it, and BLEU of the rest of each output against
the rest of its reference is reported beside that of the unconstrained output's words after the same
count. Coverage penalty: BLEU and TER of beam search at each --betas value. Everything runs in this
process on the CPU (the machine is printed), so the timings compare searches, not process starts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import cpu_model, markdown_table, read_lines


def holds(text: str, phrase: str) -> bool:
    """`phrase` in `text`, as written and on word boundaries."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def draw_constraints(refs: list[str], outputs: list[str], count: int, seed: int) -> list[list[str]]:
    """Per sentence, `count` reference words or bigrams the output lacks (fewer when there are not as many),
    none of them inside another; the same seed gives the same draw."""
    rng = random.Random(seed)
    drawn = []
    for ref, out in zip(refs, outputs):
        words = [w for w in re.findall(r"\w[\w'-]*", ref)]
        candidates = [w for w in words if not holds(out, w)]
        candidates += [
            f"{a} {b}" for a, b in zip(words, words[1:]) if not holds(out, f"{a} {b}") and holds(ref, f"{a} {b}")
        ]
        rng.shuffle(candidates)
        chosen: list[str] = []
        for phrase in candidates:
            if len(chosen) == count:
                break
            if all(not holds(phrase, c) and not holds(c, phrase) for c in chosen):
                chosen.append(phrase)
        drawn.append(chosen)
    return drawn


def first_third(ref: str) -> tuple[str, str]:
    """(the first third of a reference's words, the rest)."""
    words = ref.split()
    cut = len(words) // 3
    return " ".join(words[:cut]), " ".join(words[cut:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="+")
    parser.add_argument("--src", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--betas", default="0,0.1,0.2,0.4", help="coverage penalties to score (comma-separated)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import torch

    from seq2seq.decoding.inference import best_strings, translate_sentences
    from seq2seq.decoding.loading import load_for_decoding
    from seq2seq.metrics import corpus_scores

    src, refs = list(read_lines(Path(args.src))), list(read_lines(Path(args.ref)))
    model, tokenizer, config, *_ = load_for_decoding(args.checkpoint, "cpu")
    cfg = replace(config.decode, beam_size=args.beam_size, nbest=1, batch_size=args.batch_size, sampling=False)
    cpu = torch.device("cpu")

    def decode(**steer: Any) -> tuple[list[str], float]:
        start = time.perf_counter()
        found = translate_sentences(model, tokenizer, src, steer.pop("cfg", cfg), cpu, **steer)
        return best_strings(tokenizer, found), time.perf_counter() - start

    plain, _ = decode()
    rows: list[dict[str, Any]] = []
    speeds: dict[str, list[float]] = {"none": []}
    outputs: dict[str, list[str]] = {"none": plain}
    drawn = {n: draw_constraints(refs, plain, n, args.seed) for n in (1, 2)}
    for n in (1, 2):
        speeds[f"{n}"] = []
    for _ in range(args.repeats):
        outputs["none"], seconds = decode()
        speeds["none"].append(len(src) / seconds)
        for n in (1, 2):
            outputs[f"{n}"], seconds = decode(constraints=drawn[n])
            speeds[f"{n}"].append(len(src) / seconds)
    for name in ("none", "1", "2"):
        scores = corpus_scores(outputs[name], refs)
        wanted = drawn[int(name)] if name != "none" else [[] for _ in src]
        total = sum(map(len, wanted))
        met = sum(holds(out, phrase) for out, phrases in zip(outputs[name], wanted) for phrase in phrases)
        rows.append(
            {
                "constraints per sentence": name,
                "constraints": total,
                "met": met,
                "bleu": scores.bleu,
                "chrf": scores.chrf,
                "ter": scores.ter,
                "sentences_per_sec": round(statistics.median(speeds[name]), 1),
            }
        )
    base = rows[0]["sentences_per_sec"]
    print(f"steering on {cpu_model()}, beam {args.beam_size}, batches of {args.batch_size}, {len(src)} sentences\n")
    print(
        markdown_table(
            ["constraints per sentence", "met", "BLEU", "chrF", "TER", "sentences/s", "of unconstrained"],
            (
                [
                    r["constraints per sentence"],
                    f"{r['met']} of {r['constraints']}",
                    r["bleu"],
                    r["chrf"],
                    r["ter"],
                    r["sentences_per_sec"],
                    f"{r['sentences_per_sec'] / base:.2f}",
                ]
                for r in rows
            ),
        )
    )
    cuts = [first_third(ref) for ref in refs]
    prefixed, _ = decode(prefixes=[p or None for p, _ in cuts])
    starts = sum(out.startswith(p) for out, (p, _) in zip(prefixed, cuts))
    rest = [out[len(p) :].strip() for out, (p, _) in zip(prefixed, cuts)]
    plain_rest = [" ".join(out.split()[len(p.split()) :]) for out, (p, _) in zip(plain, cuts)]
    prefix_row = {
        "start_with_prefix": starts,
        "sentences": len(src),
        "rest_bleu": corpus_scores(rest, [r for _, r in cuts], ter=False).bleu,
        "plain_rest_bleu": corpus_scores(plain_rest, [r for _, r in cuts], ter=False).bleu,
    }
    print(
        f"\nprefixes (the first third of each reference's words): {starts} of {len(src)} outputs start with their "
        f"prefix; BLEU of the rest {prefix_row['rest_bleu']} (unconstrained output after as many words: "
        f"{prefix_row['plain_rest_bleu']})"
    )
    coverage = []
    for beta in (float(b) for b in args.betas.split(",")):
        out, _ = decode(cfg=replace(cfg, coverage_penalty=beta))
        scores = corpus_scores(out, refs)
        coverage.append({"beta": beta, "bleu": scores.bleu, "ter": scores.ter})
    print(
        "\n" + markdown_table(["coverage penalty", "BLEU", "TER"], ([c["beta"], c["bleu"], c["ter"]] for c in coverage))
    )
    if args.out:
        report = {"cpu": cpu_model(), "constraints": rows, "prefixes": prefix_row, "coverage": coverage}
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
