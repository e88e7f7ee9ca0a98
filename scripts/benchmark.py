"""Benchmark harness: training throughput, decoding speed and peak memory, on Multi30k by default.

    python scripts/benchmark.py [--data-dir ../shared/data/multi30k] [--experiment multi30k_gru]
        [--checkpoint CKPT] [--windows 5] [--window-steps 10] [--warmup-steps 5] [--out benchmark.json]
        [KEY=VALUE ...]          # any config override, e.g. train.threads=2 model.hidden_size=256

Each measurement runs in a fresh worker process (so its peak resident memory is its own):
- training: target tokens per second over steady-state steps (the first --warmup-steps excluded),
  the median of --windows windows of --window-steps steps each;
- decoding (needs --checkpoint, a trained model): sentences per second on the test split
  (test_2016_flickr: 1,000 sentences) with greedy search and with beam 5, and their BLEU.
The results go to a JSON file and a markdown table on standard output.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def compose(experiment: str, data_dir: str, src: str, tgt: str, overrides: list[str]):  # noqa: ANN201
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from seq2seq.config import Config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            config_name="config",
            overrides=[
                f"+experiment={experiment}",
                f"data.dir={data_dir}",
                f"data.src_lang={src}",
                f"data.tgt_lang={tgt}",
                *overrides,
            ],
        )
    return Config.from_dict(OmegaConf.to_object(cfg))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_training(args: argparse.Namespace) -> dict:
    import random

    import torch

    from seq2seq.data import make_batch, token_batches
    from seq2seq.model import count_parameters
    from seq2seq.trainer import Trainer, prepare_data

    config = compose(args.experiment, args.data_dir, args.src, args.tgt, args.overrides)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    data = prepare_data(config)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), data)
        batches = token_batches(
            [len(s) for s in data.train_src],
            [len(t) for t in data.train_tgt],
            config.train.batch_tokens,
            random.Random(config.train.seed),
        )
        needed = args.warmup_steps + args.windows * args.window_steps
        windows: list[float] = []
        sentences = 0
        tokens, start = 0, 0.0
        for step, indices in enumerate(batches[:needed]):
            if step >= args.warmup_steps and (step - args.warmup_steps) % args.window_steps == 0:
                if step > args.warmup_steps:
                    windows.append(tokens / (time.perf_counter() - start))
                tokens, start = 0, time.perf_counter()
            batch = make_batch([data.train_src[i] for i in indices], [data.train_tgt[i] for i in indices])
            _, ntokens, _, _ = trainer.train_step(batch.to(trainer.device))
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            tokens += ntokens
            sentences += len(indices) if step >= args.warmup_steps else 0
        windows.append(tokens / (time.perf_counter() - start))
        trainer.writer.close()
    return {
        "tokens_per_sec": round(statistics.median(windows)),
        "tokens_per_sec_windows": [round(w) for w in windows],
        "steps_timed": args.windows * args.window_steps,
        "sentences_per_batch": round(sentences / (args.windows * args.window_steps), 1),
        "batch_tokens": config.train.batch_tokens,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
        "parameters": count_parameters(trainer.model),
        "vocab": [data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size],
        "peak_rss_mb": round(peak_rss_mb()),
    }


def measure_decoding(args: argparse.Namespace) -> dict:
    import torch

    from seq2seq.checkpoint import model_from_checkpoint
    from seq2seq.corpus import load_split
    from seq2seq.inference import best_strings, translate_sentences
    from seq2seq.metrics import score
    from seq2seq.trainer import resolve_device

    config = compose(args.experiment, args.data_dir, args.src, args.tgt, args.overrides)
    device = resolve_device(config.train.device)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    model, tokenizer, saved, _ = model_from_checkpoint(args.checkpoint, device)
    test = load_split(config.data, "test")
    results = {"sentences": len(test), "threads": torch.get_num_threads(), "device": str(device)}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        decode = replace(saved.decode, beam_size=beam, nbest=1, batch_size=args.decode_batch_size)
        start = time.perf_counter()
        hyps = best_strings(tokenizer, translate_sentences(model, tokenizer, test.src, decode, device))
        seconds = time.perf_counter() - start
        scores = score(hyps, test.tgt)
        results[name] = {
            "sentences_per_sec": round(len(hyps) / seconds, 1),
            "seconds": round(seconds, 1),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
            "signature": scores.bleu_signature,
        }
    results["peak_rss_mb"] = round(peak_rss_mb())
    return results


def run_worker(kind: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    rows = ["| measurement | value |", "| --- | --- |"]
    t = report["training"]
    rows += [
        f"| training target tokens/s (median of {len(t['tokens_per_sec_windows'])} windows) | {t['tokens_per_sec']} |",
        f"| training windows (tokens/s) | {', '.join(map(str, t['tokens_per_sec_windows']))} |",
        f"| batch budget / mean sentences per batch | {t['batch_tokens']} tokens / {t['sentences_per_batch']} |",
        f"| threads / device | {t['threads']} / {t['device']} |",
        f"| parameters | {t['parameters']:,} |",
        f"| training peak RSS | {t['peak_rss_mb']} MB |",
    ]
    d = report.get("decoding")
    if d:
        for name in ("greedy", "beam5"):
            rows.append(
                f"| decoding {name}: sentences/s ({d['sentences']} sentences) | {d[name]['sentences_per_sec']} "
                f"(BLEU {d[name]['bleu']}) |"
            )
        rows.append(f"| decoding peak RSS | {d['peak_rss_mb']} MB |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--experiment", default="multi30k_gru")
    parser.add_argument("--checkpoint", help="a trained checkpoint for the decoding measurements")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=10)
    parser.add_argument("--decode-batch-size", type=int, default=64)
    parser.add_argument("--out", default="benchmark.json")
    parser.add_argument("--worker", choices=["train", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
    args = parser.parse_args()
    if args.worker:
        measure = measure_training if args.worker == "train" else measure_decoding
        print(json.dumps(measure(args)))
        return
    argv = [
        *("--data-dir", args.data_dir, "--src", args.src, "--tgt", args.tgt, "--experiment", args.experiment),
        *("--warmup-steps", str(args.warmup_steps), "--windows", str(args.windows)),
        *("--window-steps", str(args.window_steps), "--decode-batch-size", str(args.decode_batch_size)),
        *(("--checkpoint", args.checkpoint) if args.checkpoint else ()),
        *args.overrides,
    ]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "command": " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "experiment": args.experiment,
        "overrides": args.overrides,
        "training": run_worker("train", argv),
    }
    if args.checkpoint:
        report["decoding"] = run_worker("decode", argv)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
