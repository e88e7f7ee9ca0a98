"""Load benchmark of seq2seq.serve: sentences per second and latency under concurrent clients, against the CLI.

    python benchmarks/serve_benchmark.py --checkpoint PATH/TO/best.pt --src PATH/TO/test_2016_flickr.de[.gz]
        [--sentences 1000] [--clients 1 8 32] [--beam-size 1] [--device cpu]
        [--batching continuous] [--max-batch-sentences 32] [--max-wait-ms MS] [--quantize int8]
        [--serve-args "--threads 1"] [--repeats 1] [--out serve_benchmark.json]

1. `python -m seq2seq.translate` translates the first --sentences non-empty lines of --src (same
   checkpoint, same beam size) in one process; its wall time, less that of the same command on empty
   input (start-up: imports and loading the checkpoint), each the median of --translate-runs (3) runs,
   gives its sentences per second. Its output is
   the reference for every response of the server.
2. `python -m seq2seq.serve` starts on a free loopback port; for each --clients N, N threads (each with
   its own keep-alive connection) share the sentences, posting one sentence per request and timing each.
   Reported: sentences per second over the whole round, p50/p99 latency, the number of decoding batches
   and the largest one (GET /health), the CPU seconds the round cost the clients (this process) and the
   server (Linux), and the wrong (text differs from translate's) and missing (error, timeout) responses,
   which must both be 0. With --repeats R each round runs R times and the row holds the medians (sentences
   per second, latencies) and the sums (wrong, missing).

Prints a markdown table and writes everything to --out as JSON. Exits with 1 when any response was wrong
or missing. Traffic goes to 127.0.0.1 only, and every loop is bounded by --sentences.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import markdown_table, read_lines

HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file or run folder")
    parser.add_argument("--src", required=True, type=Path, help="source sentences, one per line")
    parser.add_argument("--sentences", type=int, default=1000, help="how many (the first non-empty lines)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients per round")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="for both translate and the server (default: cpu)")
    parser.add_argument("--batching", choices=["continuous", "dynamic"], default="continuous", help="of the server")
    parser.add_argument("--max-batch-sentences", type=int, default=32, help="passed to seq2seq.serve")
    parser.add_argument("--max-wait-ms", type=float, help="passed to seq2seq.serve (default: the server's)")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none", help="for translate and serve")
    parser.add_argument("--translate-runs", type=int, default=3, help="timings of translate (the median is used)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each client round (the medians are reported)")
    parser.add_argument("--serve-args", default="", help='more options for seq2seq.serve, e.g. "--threads 1"')
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request before it counts missing")
    parser.add_argument("--out", type=Path, default=Path("serve_benchmark.json"))
    return parser


def read_sentences(path: Path, count: int) -> list[str]:
    """The first `count` non-empty lines of a text file (gzip-compressed when it ends in .gz)."""
    return list(itertools.islice((line for line in read_lines(path) if line.strip()), count))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between the nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ------------------------------------------------------------------------------ the command line
def run_translate(args: argparse.Namespace, sentences: list[str], folder: Path) -> tuple[list[str], float]:
    """translate's output lines and its wall time in seconds, on `sentences` (empty: the start-up alone)."""
    source = folder / f"src_{len(sentences)}.txt"
    source.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    command = [sys.executable, "-m", "seq2seq.translate", args.checkpoint, "--beam-size", str(args.beam_size)]
    command += ["--device", args.device, "--quantize", args.quantize]
    begin = time.perf_counter()
    with source.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, check=False)
    seconds = time.perf_counter() - begin
    if done.returncode != 0:
        sys.exit(f"serve_benchmark: seq2seq.translate failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode("utf-8").split("\n")[:-1] if sentences else [], seconds


def measure_translate(args: argparse.Namespace, sentences: list[str], folder: Path) -> tuple[list[str], dict]:
    """translate's output and its sentences/s: the medians of --translate-runs timings, with and without input."""
    runs = [run_translate(args, sentences, folder) for _ in range(args.translate_runs)]
    expected = runs[0][0]
    seconds = statistics.median(t for _, t in runs)
    startup = statistics.median(run_translate(args, [], folder)[1] for _ in range(args.translate_runs))
    if len(expected) != len(sentences):
        sys.exit(f"serve_benchmark: translate wrote {len(expected)} lines for {len(sentences)} sentences")
    decoding = max(seconds - startup, 1e-9)
    row = {"mode": "translate (command line)", "clients": None, "sentences": len(sentences)}
    row |= {"seconds": round(seconds, 2), "startup_seconds": round(startup, 2), "runs": args.translate_runs}
    row |= {"sentences_per_sec": round(len(sentences) / decoding, 1), "p50_ms": None, "p99_ms": None}
    return expected, row | {"wrong": 0, "missing": 0, "batches": None}


# ------------------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "seq2seq.serve", args.checkpoint, "--host", HOST, "--port", str(port)]
    command += ["--device", args.device, "--max-batch-sentences", str(args.max_batch_sentences)]
    command += ["--max-queued-sentences", str(max(args.clients) * 4 + 100)]
    if args.max_wait_ms is not None:
        command += ["--max-wait-ms", str(args.max_wait_ms)]
    command += ["--batching", args.batching]
    command += ["--log-level", "warning", "--quantize", args.quantize, *shlex.split(args.serve_args)]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"serve_benchmark: the server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    sys.exit("serve_benchmark: the server did not answer /health within 120 s")


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=10) as response:
        return json.loads(response.read())


class Client:
    """One keep-alive connection posting one sentence per request."""

    def __init__(self, port: int, beam_size: int, timeout: float) -> None:
        self.port, self.beam_size, self.timeout = port, beam_size, timeout
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def translate(self, sentence: str) -> str | None:
        """The translation, or None when the request failed (then the connection is opened anew)."""
        body = json.dumps({"text": [sentence], "beam_size": self.beam_size})
        try:
            self.connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            payload = response.read()
            if response.status != 200:
                return None
            entries = json.loads(payload)["translations"]
            return entries[0]["hypotheses"][0]["text"] if len(entries) == 1 else None
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            self.connection.close()
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            return None


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by this process (all its threads), or by process `pid` (Linux)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime in clock ticks


def measure_round(
    args: argparse.Namespace, port: int, sentences: list[str], expected: list[str], clients: int, server_pid: int
) -> dict:
    """`clients` threads share the sentences, one request each; throughput, latency and correctness."""
    latencies: list[float] = [0.0] * len(sentences)
    answers: list[str | None] = [None] * len(sentences)
    next_index, lock = iter(range(len(sentences))), threading.Lock()

    def work() -> None:
        client = Client(port, args.beam_size, args.timeout)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            begin = time.perf_counter()
            answers[i] = client.translate(sentences[i])
            latencies[i] = time.perf_counter() - begin

    before = health(port)
    cpu_before = cpu_seconds(), cpu_seconds(server_pid) if Path(f"/proc/{server_pid}").exists() else None
    threads = [threading.Thread(target=work) for _ in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    client_cpu = cpu_seconds() - cpu_before[0]
    server_cpu = None if cpu_before[1] is None else cpu_seconds(server_pid) - cpu_before[1]
    after = health(port)
    batches = after["batches"] - before["batches"]
    missing = sum(answer is None for answer in answers)
    wrong = sum(answer is not None and answer != want for answer, want in zip(answers, expected))
    row = {"mode": "serve", "clients": clients, "sentences": len(sentences), "seconds": round(seconds, 2)}
    row |= {"sentences_per_sec": round(len(sentences) / seconds, 1)}
    row |= {"p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}
    row |= {"client_cpu_s": round(client_cpu, 1), "server_cpu_s": None if server_cpu is None else round(server_cpu, 1)}
    return row | {"wrong": wrong, "missing": missing, "batches": batches, "largest_batch": after["largest_batch"]}


def median_round(rounds: list[dict]) -> dict:
    """One row for repeated rounds: medians of the rates, latencies and CPU seconds, sums of the failures."""
    row = dict(rounds[0])
    for key in ("seconds", "sentences_per_sec", "p50_ms", "p99_ms", "client_cpu_s", "server_cpu_s", "batches"):
        values = [r[key] for r in rounds if r[key] is not None]
        row[key] = round(statistics.median(values), 2) if values else None
    row["wrong"], row["missing"] = sum(r["wrong"] for r in rounds), sum(r["missing"] for r in rounds)
    row["largest_batch"] = max(r["largest_batch"] for r in rounds)
    row["repeats"] = len(rounds)
    row["all_sentences_per_sec"] = [r["sentences_per_sec"] for r in rounds]
    return row


# ------------------------------------------------------------------------------------------ report
def markdown(rows: list[dict]) -> str:
    columns = ["mode", "clients", "sentences", "sentences_per_sec", "p50_ms", "p99_ms", "batches", "largest_batch"]
    columns += ["client_cpu_s", "server_cpu_s", "wrong", "missing"]
    return markdown_table(columns, [["—" if row.get(c) is None else row[c] for c in columns] for row in rows])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sentences < 1 or min(args.clients) < 1 or args.translate_runs < 1 or args.repeats < 1:
        print(
            "serve_benchmark: --sentences, --translate-runs, --repeats and every --clients must be >= 1",
            file=sys.stderr,
        )
        return 2
    try:
        sentences = read_sentences(args.src, args.sentences)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"serve_benchmark: cannot read --src {args.src}: {exc}", file=sys.stderr)
        return 2
    if not sentences:
        print(f"serve_benchmark: {args.src} holds no sentences", file=sys.stderr)
        return 2
    if len(sentences) < args.sentences:
        print(f"serve_benchmark: {args.src} has only {len(sentences)} non-empty lines", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="serve_benchmark_") as tmp:
        folder = Path(tmp)
        expected, cli_row = measure_translate(args, sentences, folder)
        port = free_port()
        server = start_server(args, port, folder / "server.log")
        try:
            Client(port, args.beam_size, args.timeout).translate(sentences[0])  # warm-up
            rows = [cli_row]
            for n in args.clients:
                rounds = [measure_round(args, port, sentences, expected, n, server.pid) for _ in range(args.repeats)]
                rows.append(median_round(rounds))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(markdown(rows))
    print(f"\nresults written to {args.out}", file=sys.stderr)
    failures = sum(row["wrong"] + row["missing"] for row in rows)
    if failures:
        print(f"serve_benchmark: {failures} wrong or missing responses", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
