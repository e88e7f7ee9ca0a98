"""Data at scale: preprocessing time, time to the first training step and peak memory, by corpus size.

    python benchmarks/data_benchmark.py --source-dir PATH/TO/multi30k --pairs 100000 1000000
        [--work DIR] [--out data_benchmark.json] [--steps 20] [--torchrun 0|2]
        [--experiment multi30k_gru_cpu] [--seed 1] [--baseline-pairs 200000]
        [--max-rss-gb 12] [--timeout-minutes 60] [KEY=VALUE ...]   # extra training overrides

For each N of --pairs (100000, 1M, 4.5M; `100k`, `1M`, `4.5M` are accepted too):

1. a synthetic WMT-sized corpus WORK/pairs_N/: train.de/train.en with N pairs, each line two
   Multi30k training sentences a few lines apart, or three on a third of the lines (about 26 German
   and 28 English words a line; chosen with a seeded RNG, the German and English lines built from the
   same sentence numbers, so they stay translations of each other), written line by line; val and
   test_2016_flickr copied from --source-dir. A corpus already there with the same N, seed and source
   is reused.
2. run "cold": `python -m seq2seq.train +experiment=EXPERIMENT data.dir=WORK/pairs_N ...` with empty
   encoded-corpus and SentencePiece caches (WORK/cache/pairs_N/{data,spm}): the first-run
   preprocessing time (reading, SentencePiece training, encoding into the cache);
3. run "cached": the same command again, with both caches in place: the start-up cost that every
   later run (a resume, a sweep job, each torchrun rank) pays (for local files the caches are found by
   a fingerprint of the files' bytes, and the training text is not read);
4. with --torchrun 2: the cached command under `torch.distributed.run --standalone --nproc_per_node=2`.

Every run trains --steps steps (train.log_every=1, so step 1 is logged), validates once on 200
sentences and scores the test split with greedy search at the end (not part of the timings). From the
log's timestamps each run gets: the time from process start to the end of step 1, and the phases
before it (interpreter + imports + Hydra; fingerprinting the training files and, on a first run,
reading the three splits; SentencePiece; encoding into or mapping the cache; reading valid and test when
the cache spared the training text; trainer setup; step 1). Peak resident memory: of the
training process from `os.wait4` (its own rusage, so maxima never carry over between runs), and for
every run the peak of the sum of VmRSS over the whole process tree, sampled from /proc every 0.2 s
(with RssAnon/RssFile at that peak: file-backed pages include the memory-mapped cache). For torchrun
the sampled sum is the number (all ranks and the launcher); wait4 only sees the largest process.

Results go to --out (JSON, written after every run) and a markdown table on standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

import seq2seq

from common import command_line, cpu_model, markdown_table, read_lines

SPLIT_FILES = ("val", "test_2016_flickr")  # copied as they are (PREFIX.LANG, plain text)
TRAIN_PREFIX = "train"
LANGS = ("de", "en")
SPREAD = 50  # each further sentence of a line is 1..SPREAD lines after the one before (wrapping around)
THIRD = 1 / 3  # the share of lines with a third sentence: Multi30k sentences have 11-12 words, WMT's 25-30 a side
GENERATOR_VERSION = 2
SAMPLE_SECONDS = 0.2

# Hydra's default job log format: [2026-11-30 23:42:08,271][seq2seq.train][INFO] - message
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[([^\]]+)\]\[(\w+)\] - (.*)$")
# the log events that bound the phases, in the order a run passes them: name, regex on the message
MARKERS = (
    ("started", r"^run directory: "),
    ("train_read", r"^train \(.*\): kept \d+ of \d+ pairs"),
    ("corpus_read", r"^test \(.*\): kept \d+ of \d+ pairs"),
    ("spm_training", r"^tokenizer: training "),
    ("spm_reused", r"^tokenizer: reusing cached"),
    ("tokenizer_ready", r"^tokenizer: source vocab"),
    ("cache_building", r"^train: encoding \d+ pairs into "),
    ("cache_found", r"^train: encoded pairs from the cache"),
    ("encoded", r"^train: \d+ pairs after length filtering"),
    ("model_ready", r"^model: "),
    ("first_step", r"^step 1\s+epoch "),
    ("training_done", r"^stopped after \d+ steps"),
    ("results_written", r"^results written to "),
)


ENCODE_RATE = re.compile(r"train: encoded \d+ pairs in [0-9.]+s \(([0-9.]+) pairs/s\)")


# ------------------------------------------------------------------------------------------ the corpus


def parse_count(text: str) -> int:
    """100000, 100k, 1M, 4.5M -> a number of pairs."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a number of pairs: {text!r} (e.g. 100000, 100k, 1M, 4.5M)")
    value = float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole number of pairs: {text!r}")
    return int(value)


def source_file(folder: Path, name: str) -> Path:
    """folder/name or folder/name.gz."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder / name}[.gz] not found (is --source-dir a Multi30k folder?)")


def generate_corpus(source: Path, dest: Path, pairs: int, seed: int = 1) -> dict[str, Any]:
    """Write dest/train.{de,en} with `pairs` lines of two or three source sentences, and copy val/test.

    Line i joins Multi30k training sentences a, b = a + 1..SPREAD and, on a share THIRD of the lines,
    c = b + 1..SPREAD (mod the source size), in that order on both sides, so line i of train.de
    translates line i of train.en. Lines are written as they are drawn;
    only the source sentences (29,000 pairs for Multi30k) are held in memory. Returns what was written
    (also saved as dest/corpus.json; a folder whose corpus.json matches is reused as it is).
    """
    want = {"version": GENERATOR_VERSION, "pairs": pairs, "seed": seed, "source": str(source.resolve())}
    meta_path = dest / "corpus.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want:
            return meta
    sentences = {lang: list(read_lines(source_file(source, f"{TRAIN_PREFIX}.{lang}"))) for lang in LANGS}
    count = len(sentences[LANGS[0]])
    if count != len(sentences[LANGS[1]]) or count < 3:
        raise ValueError(f"{source}: train.de and train.en must hold the same number (>= 3) of sentences")
    dest.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    rng = random.Random(seed)
    spread = min(SPREAD, (count - 1) // 2)  # so that the sentences of one line are never the same one
    words = dict.fromkeys(LANGS, 0)
    files = {lang: (dest / f"{TRAIN_PREFIX}.{lang}").open("w", encoding="utf-8", newline="\n") for lang in LANGS}
    try:
        for _ in range(pairs):
            picked = [rng.randrange(count)]
            for _ in range(2 if rng.random() < THIRD else 1):
                picked.append((picked[-1] + 1 + rng.randrange(spread)) % count)
            for lang in LANGS:
                line = " ".join(sentences[lang][k].strip() for k in picked)
                words[lang] += len(line.split())
                files[lang].write(line + "\n")
    finally:
        for f in files.values():
            f.close()
    for prefix in SPLIT_FILES:
        for lang in LANGS:
            with (dest / f"{prefix}.{lang}").open("w", encoding="utf-8", newline="\n") as f:
                for line in read_lines(source_file(source, f"{prefix}.{lang}")):
                    f.write(line + "\n")
    train_bytes = sum((dest / f"{TRAIN_PREFIX}.{lang}").stat().st_size for lang in LANGS)
    meta = {
        **want,
        "source_sentences": count,
        "words_per_line": {lang: round(words[lang] / pairs, 2) for lang in LANGS},
        "train_mb": round(train_bytes / 2**20, 3),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# ------------------------------------------------------------------------------------------ the log


def parse_log_line(line: str) -> tuple[float, str, str, str] | None:
    """(unix time, logger, level, message) of one Hydra log line, or None for any other line.

    Hydra stamps local time with milliseconds; it is read back as local time, as `time.time()` counts.
    """
    match = LOG_LINE.match(line.rstrip("\r\n"))
    if not match:
        return None
    stamp, logger, level, message = match.groups()
    when = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return when, logger, level, message


def log_events(lines: Iterable[str]) -> dict[str, float]:
    """The first time each of MARKERS appears in the log lines."""
    patterns = [(name, re.compile(regex)) for name, regex in MARKERS]
    events: dict[str, float] = {}
    for line in lines:
        parsed = parse_log_line(line)
        if parsed is None:
            continue
        when, _, _, message = parsed
        for name, pattern in patterns:
            if name not in events and pattern.search(message):
                events[name] = when
    return events


def phase_times(events: dict[str, float], start: float) -> dict[str, float | None]:
    """Seconds of each phase up to the first step, from the events of `log_events` and the process start.

    A first run reads the three splits, then trains SentencePiece and encodes; a run whose caches are in
    place fingerprints the training files' bytes, maps the caches, and reads only valid and test (after the
    training pairs). Phases that a run does not go through are None.
    """
    tokenizer = "spm_training" if "spm_training" in events else "spm_reused"
    data_done = max((events[k] for k in ("encoded", "corpus_read") if k in events), default=None)
    valid_test_after = "corpus_read" in events and "encoded" in events and events["corpus_read"] > events["encoded"]

    def span(a: str | None, b: str | None) -> float | None:
        t0 = start if a is None else (data_done if a == "data_done" else events.get(a))
        t1 = data_done if b == "data_done" else events.get(b or "")
        return None if t0 is None or t1 is None else round(t1 - t0, 2)

    return {
        "startup": span(None, "started"),  # interpreter, imports, Hydra composing the config
        # the training files' fingerprint (their bytes hashed), and on a first run reading the three splits
        "before_tokenizer": span("started", tokenizer),
        "tokenizer": span(tokenizer, "tokenizer_ready"),  # train SentencePiece, or load the cached model(s)
        "encode": span("tokenizer_ready", "encoded"),  # cache key, encode and write the cache; or map it
        "valid_test": span("encoded", "corpus_read") if valid_test_after else None,  # when read after the cache
        "trainer_setup": span("data_done", "model_ready"),  # model, optimizer, validation ids
        "first_step": span("model_ready", "first_step"),  # the epoch's batches (all pairs), then step 1
        "preprocessing": span("started", "data_done"),  # everything between Hydra and the trainer
        "start_to_first_step": span(None, "first_step"),
        "start_to_training_done": span(None, "training_done"),
    }


# ------------------------------------------------------------------------------------------ processes


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants now alive (from the parent ids in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem of one process, in kB ({} when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return out


class TreeSampler(threading.Thread):
    """Every SAMPLE_SECONDS: the summed memory of a process tree; keeps the peak of the VmRSS sum.

    With `limit_mb`, a tree whose sum passes it is killed (its process group) and `over_limit` is set.
    """

    def __init__(self, root: int, limit_mb: float | None = None) -> None:
        super().__init__(daemon=True)
        self.root, self.limit_mb = root, limit_mb
        self.peak: dict[str, int] = {"VmRSS": 0}
        self.peak_processes = 0
        self.samples = 0
        self.over_limit = False
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = process_tree(self.root) if Path(f"/proc/{self.root}").exists() else []
            total: dict[str, int] = {}
            for pid in pids:
                for key, value in memory_kb(pid).items():
                    total[key] = total.get(key, 0) + value
            if total:
                self.samples += 1
                if total.get("VmRSS", 0) > self.peak["VmRSS"]:
                    self.peak, self.peak_processes = total, len(pids)
                if self.limit_mb is not None and total.get("VmRSS", 0) / 1024 > self.limit_mb and not self.over_limit:
                    self.over_limit = True
                    kill_group(self.root)
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._done.set()
        self.join()


def kill_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, to the process group that `pid` leads (a run started in its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(5)


# ------------------------------------------------------------------------------------------ one run


def train_command(
    corpus: Path, cache: Path, run_dir: Path, steps: int, experiment: str, overrides: Sequence[str]
) -> list[str]:
    return [
        "-m",
        "seq2seq.train",
        f"+experiment={experiment}",
        f"data.dir={corpus}",
        f"data.train_prefix={TRAIN_PREFIX}",
        "data.valid_prefix=val",
        "data.test_prefix=test_2016_flickr",
        f"train.max_steps={steps}",
        f"train.validate_every={steps}",
        "train.log_every=1",
        "train.max_valid_sentences=200",
        "train.insight=false",
        "train.average_checkpoints=0",
        "train.test_beam_size=1",
        f"data.cache_dir={cache / 'data'}",
        f"tokenizer.cache_dir={cache / 'spm'}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def measure_run(args: list[str], run_dir: Path, nproc: int, limit_mb: float | None, timeout_s: float) -> dict[str, Any]:
    """Run one training command (under torchrun when nproc > 1), wait for it with os.wait4, read its log."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if nproc > 1:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    else:
        argv = [sys.executable, *args]
    console = run_dir.with_name(run_dir.name + ".console.log")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    say("$ " + " ".join(argv))
    with console.open("w") as out:
        start = time.time()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # fmt: skip
        sampler = TreeSampler(proc.pid, limit_mb)
        sampler.start()
        timer = threading.Timer(timeout_s, kill_group, [proc.pid])
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - start
    lines = console.read_text(errors="replace").splitlines()
    events = log_events(lines)
    rate = next((m for m in map(ENCODE_RATE.search, lines) if m), None)
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    result: dict[str, Any] = {
        "command": " ".join(argv),
        "processes": nproc,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "start_unix": round(start, 3),
        "phases_s": phase_times(events, start),
        "training_text_read": "train_read" in events,
        "spm_trained": "spm_training" in events,
        "cache_built": "cache_building" in events,
        "encode_pairs_per_s": float(rate.group(1)) if rate else None,  # the encoding pass alone, from its log line
        "peak_rss_mb_wait4": mb(usage.ru_maxrss),  # the largest single process of the tree (Linux: kB)
        "peak_rss_mb_sum": mb(sampler.peak.get("VmRSS", 0)),  # the whole tree, summed, sampled
        "at_peak_mb": {k: mb(v) for k, v in sampler.peak.items()},
        "at_peak_processes": sampler.peak_processes,
        "samples": sampler.samples,
        "console_log": str(console),
    }
    if sampler.over_limit:
        result["stopped"] = f"killed: the process tree passed {limit_mb:.0f} MB resident"
    elif proc.returncode != 0:
        result["stopped"] = f"exit code {proc.returncode}; last lines: " + " | ".join(lines[-3:])
    return result


def baseline_encoding(corpus: Path, spm_cache: Path, pairs: int) -> dict[str, Any]:
    """What encoding cost before the word cache and the worker processes: SentencePiece on whole lines, in
    this process (its own threads, as `Tokenizer.encode_src` ran it), then flattening into arrays, over the
    first `pairs` training pairs, with the models the cold run trained. Returns pairs/s."""
    from seq2seq.data.tokenizer import Tokenizer, flatten

    models = {m.name.split(".")[-2]: m.read_bytes() for m in spm_cache.glob("*.model")}
    tokenizer = Tokenizer(models["joint"]) if "joint" in models else Tokenizer(models["src"], models["tgt"])
    src = [line.strip() for _, line in zip(range(pairs), read_lines(corpus / f"{TRAIN_PREFIX}.{LANGS[0]}"))]
    tgt = [line.strip() for _, line in zip(range(pairs), read_lines(corpus / f"{TRAIN_PREFIX}.{LANGS[1]}"))]
    began = time.perf_counter()
    for start in range(0, len(src), 100_000):  # the chunk size the old encoder used
        flatten(tokenizer.encode_src(src[start : start + 100_000]))
        flatten(tokenizer.encode_tgt(tgt[start : start + 100_000]))
    seconds = time.perf_counter() - began
    return {"pairs": len(src), "seconds": round(seconds, 2), "pairs_per_s": round(len(src) / seconds, 1)}


def folder_mb(path: Path) -> float:
    """Disk usage of a folder (allocated blocks), in MB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return round(total / 2**20, 3)


# ------------------------------------------------------------------------------------------ report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(results: list[dict[str, Any]]) -> str:
    """The summary table and the phase table."""
    torchrun = any("torchrun" in r["runs"] for r in results)
    header = ["pairs", "words per side (de / en)", "corpus MB", "first-run preprocessing s"]
    header += ["first-run start to first step s", "cached start to first step s", "cache MB (encoded + spm)"]
    header += ["peak RSS MB (cold / cached)", "encoding pairs/s: one process, whole lines (before) / now"]
    if torchrun:
        header.append("torchrun 2 ranks: start to first step s, summed peak RSS MB")
    rows = []
    for r in results:
        cold, cached, dist = (r["runs"].get(k, {}) for k in ("cold", "cached", "torchrun"))
        words = r["corpus"]["words_per_line"]
        row = [
            fmt(r["pairs"]),
            f"{words['de']:.1f} / {words['en']:.1f}",
            fmt(r["corpus"]["train_mb"]),
            fmt(cold.get("phases_s", {}).get("preprocessing")),
            fmt(cold.get("phases_s", {}).get("start_to_first_step")),
            fmt(cached.get("phases_s", {}).get("start_to_first_step")),
            f"{fmt(r.get('cache_mb'))} + {fmt(r.get('spm_mb'))}",
            f"{fmt(cold.get('peak_rss_mb_wait4'), 0)} / {fmt(cached.get('peak_rss_mb_wait4'), 0)}",
            f"{fmt(r.get('baseline_encoding', {}).get('pairs_per_s'), 0)} / {fmt(cold.get('encode_pairs_per_s'), 0)}",
        ]
        if torchrun:
            row.append(
                f"{fmt(dist.get('phases_s', {}).get('start_to_first_step'))}, {fmt(dist.get('peak_rss_mb_sum'), 0)}"
            )
        rows.append(row)
    phases = ("startup", "before_tokenizer", "tokenizer", "encode", "valid_test", "trainer_setup", "first_step")
    phase_rows = [
        [fmt(r["pairs"]), name, *(fmt(run.get("phases_s", {}).get(k)) for k in (*phases, "start_to_first_step"))]
        for r in results
        for name, run in r["runs"].items()
    ]
    phase_header = ["pairs", "run", *phases, "start to first step"]
    return markdown_table(header, rows) + "\n\n" + markdown_table(phase_header, phase_rows)


def machine() -> dict[str, Any]:
    memory = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        first = meminfo.read_text().splitlines()[0].split()
        memory = round(int(first[1]) / 2**20, 1) if first[0] == "MemTotal:" else None
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "seq2seq": getattr(seq2seq, "__version__", None),
    }


def say(message: str) -> None:
    print(f"[data_benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", type=Path, required=True, help="a Multi30k folder (train/val/test_2016_flickr)")
    parser.add_argument("--pairs", type=parse_count, nargs="+", default=[100_000, 1_000_000, 4_500_000])
    parser.add_argument("--work", type=Path, default=Path("~/.cache/seq2seq/data_benchmark").expanduser())
    parser.add_argument("--out", type=Path, default=Path("data_benchmark.json"))
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--torchrun", type=int, choices=(0, 2), default=0, help="2: also a 2-rank torchrun run")
    parser.add_argument("--experiment", default="multi30k_gru_cpu")
    parser.add_argument("--seed", type=int, default=1, help="seeds the synthetic corpus")
    parser.add_argument("--max-rss-gb", type=float, default=None, help="kill a run whose summed RSS passes this")
    parser.add_argument("--timeout-minutes", type=float, default=60, help="kill a run that takes longer")
    baseline = "after the cold run, time the old single-process whole-line encoding on this many pairs (0: skip)"
    parser.add_argument("--baseline-pairs", type=int, default=200_000, help=baseline)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra training config overrides")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.expanduser().resolve()
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command_line(__file__, argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": {
            "steps": args.steps,
            "experiment": args.experiment,
            "seed": args.seed,
            "overrides": args.overrides,
        },
        "rss_methods": {
            "peak_rss_mb_wait4": "ru_maxrss from os.wait4 on the run's process: the largest single process",
            "peak_rss_mb_sum": f"sum of VmRSS over the process tree, sampled from /proc every {SAMPLE_SECONDS} s",
        },
        "results": [],
    }
    limit_mb = args.max_rss_gb * 1024 if args.max_rss_gb else None
    failed = False
    for pairs in args.pairs:
        corpus_dir = work / f"pairs_{pairs}"
        say(f"corpus: {pairs:,} pairs in {corpus_dir}")
        began = time.monotonic()
        corpus = generate_corpus(args.source_dir, corpus_dir, pairs, args.seed)
        entry: dict[str, Any] = {"pairs": pairs, "corpus": corpus, "generate_s": round(time.monotonic() - began, 1),
                                 "runs": {}}  # fmt: skip
        report["results"].append(entry)
        cache = work / "cache" / f"pairs_{pairs}"
        shutil.rmtree(cache, ignore_errors=True)  # the cold run starts from empty caches
        plan = [("cold", 1), ("cached", 1)] + ([("torchrun", args.torchrun)] if args.torchrun else [])
        for name, nproc in plan:
            run_dir = work / "runs" / f"pairs_{pairs}-{name}"
            command = train_command(corpus_dir, cache, run_dir, args.steps, args.experiment, args.overrides)
            run = measure_run(command, run_dir, nproc, limit_mb, args.timeout_minutes * 60)
            entry["runs"][name] = run
            entry["cache_mb"] = folder_mb(cache / "data")
            entry["spm_mb"] = folder_mb(cache / "spm")
            phases = run["phases_s"]
            say(
                f"{pairs:,} {name}: start to first step {fmt(phases['start_to_first_step'])} s, preprocessing "
                f"{fmt(phases['preprocessing'])} s, peak RSS {fmt(run['peak_rss_mb_wait4'], 0)} MB (one process), "
                f"{fmt(run['peak_rss_mb_sum'], 0)} MB (tree)" + (f"; {run['stopped']}" if "stopped" in run else "")
            )
            if name == "cold" and args.baseline_pairs and "stopped" not in run:
                entry["baseline_encoding"] = baseline_encoding(corpus_dir, cache / "spm", args.baseline_pairs)
                rate = entry["baseline_encoding"]["pairs_per_s"]
                say(f"{pairs:,}: single-process whole-line encoding {rate} pairs/s")
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            if "stopped" in run:
                failed = True
                break
        if failed:
            break
    print(markdown(report["results"]))
    say(f"results in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
