"""benchmarks/benchmark.py and joeynmt_peer.py: the harness runs end to end (tiny sizes; the numbers themselves
are not checked here), its FLOP counts and report, and the Joey NMT peer's pure parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from seq2seq.compose import compose
from seq2seq.data.batches import make_batch, token_batches
from seq2seq.data.prepare import prepare_data
from seq2seq.training.run import train
from seq2seq.training.step import TrainStep

from .conftest import BENCHMARKS, load_script, tiny_overrides
from .tiny_models import CORPUS, TINY_BENCHMARK, corpus_lines, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.bench

benchmark = load_script("benchmark")
joeynmt_peer = load_script("joeynmt_peer")

TINY = TINY_BENCHMARK


HARNESSES = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "common")


@pytest.mark.parametrize("name", HARNESSES)
def test_every_harness_runs_as_a_script_from_any_folder(name, tmp_path):
    """`python benchmarks/NAME.py` finds `common` beside it (its own folder comes first on sys.path), wherever it
    runs from."""
    proc = subprocess.run(
        [sys.executable, BENCHMARKS / f"{name}.py", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: ")


@pytest.mark.slow
def test_harness_reports_training_and_decoding(tmp_path, spm_cache):
    results = train(compose("gru", tiny_overrides(spm_cache)), tmp_path / "run")
    assert results is not None
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            BENCHMARKS / "benchmark.py",
            "--data-dir",
            CORPUS,
            "--experiment",
            "gru",
            "--checkpoint",
            results.checkpoint,
            "--warmup-steps",
            "1",
            "--windows",
            "2",
            "--window-steps",
            "2",
            "--out",
            out,
            *("--flop-steps", "2", "--flop-sentences", "20", "--matmul-n", "256"),
            *TINY,
            f"tokenizer.cache_dir={spm_cache}",
            f"data.cache_dir={spm_cache}",
            "data.test_prefix=test",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["training"]["tokens_per_sec_windows"]) == 2 and report["training"]["tokens_per_sec"] > 0
    assert report["training"]["peak_rss_mb"] > 0
    assert report["decoding"]["sentences"] == 500
    assert report["decoding"]["greedy"]["sentences_per_sec"] > 0 and "bleu" in report["decoding"]["beam5"]
    assert 0 < report["decoding"]["greedy"]["words_per_sentence"] < 50  # the output length behind the speed
    assert "| training target tokens/s" in proc.stdout
    peak, training = report["peak"], report["training"]
    assert peak["fp32_gflops"] > 0 and peak["matmul_n"] == 256 and "bf16_gflops" in peak
    assert training["flop_steps"] == 2 and training["flops_per_token"] > 0 and training["gflops"] > 0
    mixed = training["bf16_flops_per_token"] and peak["bf16_gflops"]  # train.matmul_precision=auto, native bf16
    assert training["share_of_peak"] > 0 and training["peak_used"] == ("fp32+bf16" if mixed else "fp32")
    assert training["flops_per_token_by_op"]["aten.mm"] > 0 and "aten.sigmoid_backward" in training["uncounted_ops"]
    assert report["decoding"]["flop_sentences"] == 20 and report["decoding"]["uncounted_ops"]
    for search in ("greedy", "beam5"):
        entry = report["decoding"][search]
        assert entry["flops"] == pytest.approx(entry["flops_per_sentence"] * 500, rel=1e-3) and entry["gflops"] > 0
        assert entry["share_of_peak"] > 0
    assert report["decoding"]["beam5"]["flops_per_sentence"] > report["decoding"]["greedy"]["flops_per_sentence"]
    assert "| training GFLOP/s (share of peak) |" in proc.stdout and "| decoding beam5 GFLOP/s" in proc.stdout


# --- efficiency: FLOPs (FlopCounterMode + the fused RNN kernels, analytically) and the matmul peak ----------


@pytest.fixture
def one_thread():
    """Counting runs Python for every op: one thread keeps tiny ops from waiting on a busy machine's others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lstm_flops_by_hand(batch: int, steps: int, inputs: int, hidden: int, layers: int, directions: int) -> int:
    """Forward FLOPs of nn.LSTM: per layer, direction and step 2 * batch * 4H * (input + H)."""
    sizes = [inputs] + [hidden * directions] * (layers - 1)
    return sum(2 * batch * steps * 4 * hidden * (size + hidden) * directions for size in sizes)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_fused_rnn_flops_by_hand_and_against_the_visible_path(one_thread):
    """The analytic count of the fused LSTM kernel equals the formula, and FlopCounterMode's own count of the
    same LSTM run as visible matmuls (oneDNN off), up to the one product the visible path skips: dh0."""
    torch.manual_seed(0)
    batch, steps, inputs, hidden, layers = 3, 5, 4, 6, 2
    lstm = nn.LSTM(inputs, hidden, num_layers=layers, bidirectional=True, batch_first=True)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    forward = lstm_flops_by_hand(batch, steps, inputs, hidden, layers, 2)
    h0_grads = layers * 2 * 2 * batch * 4 * hidden * hidden  # dh0 = dgates @ W_hh: skipped, h0 needs no grad
    counts = {}
    for fused in (True, False):
        with torch.backends.mkldnn.flags(enabled=fused):
            assert benchmark.count_flops(lambda: lstm(x)).total == forward
            counts[fused] = benchmark.count_flops(lambda: lstm(x)[0].sum().backward())
    assert counts[True].total == 3 * forward  # backward: the input and the weight gradients, each = forward
    assert counts[False].total == 3 * forward - h0_grads
    assert (
        set(counts[False].by_op) <= {"aten.mm", "aten.addmm"} and "aten.mkldnn_rnn_layer" not in counts[False].uncounted
    )
    if torch.backends.mkldnn.is_available():  # the fused path ran: counted analytically, and said so
        assert counts[True].uncounted["aten.mkldnn_rnn_layer_backward"] == "analytic"
        assert counts[True].by_op["aten.mkldnn_rnn_layer"] == forward
    # the formula alone, on a GRU's weights: 2 * tokens * (3H x I + 3H x H), biases skipped
    gru = nn.GRU(inputs, hidden)
    assert benchmark.rnn_flops(7, list(gru.parameters())) == 2 * 7 * 3 * hidden * (inputs + hidden)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_training_flops_of_a_seq2seq_step_fused_or_not(one_thread):
    """A whole TrainStep (LSTM, no input feeding: the encoder and the decoder's teacher-forced pass run the fused
    kernel on a CPU) counts the same FLOPs whether oneDNN fuses it (analytic) or PyTorch runs it as matmuls
    (FlopCounterMode), but for the encoder's first step: from a zero state, the matmul path skips that state's
    gradient (one product per direction), which the analytic count (backward = 2 x forward) includes."""
    tok = tiny_tokenizer()
    src, tgt = corpus_lines(count=8)
    pairs = tok.encode_src(src), tok.encode_tgt(tgt)
    results = {}
    for fused in (True, False):
        with torch.backends.mkldnn.flags(enabled=fused):
            model, config = tiny_model(tok, seed=3, cell="lstm", input_feeding=False, dropout=0.0)
            update = TrainStep(model, config.train, torch.device("cpu"))

            def train_on(step: int, indices: list[int], update=update) -> int:
                return update.step(
                    make_batch([pairs[0][i] for i in indices], [pairs[1][i] for i in indices]), step
                ).tokens

            results[fused] = benchmark.training_flops(iter([[0, 1, 2, 3], [4, 5, 6, 7]]), train_on, 2, first_step=0)
    fused_count, matmul_count = results[True]["flops_per_token"], results[False]["flops_per_token"]
    assert matmul_count > 0 and 0 <= fused_count - matmul_count < 0.002 * matmul_count
    assert results[True]["flop_steps"] == 2 and results[False]["uncounted_ops"]["aten.tanh_backward"] == "not counted"
    if torch.backends.mkldnn.is_available():
        assert results[True]["uncounted_ops"]["aten.mkldnn_rnn_layer"] == "analytic"
        assert results[True]["flops_per_token_by_op"]["aten.mkldnn_rnn_layer_backward"] > 0


def test_matmul_peak(one_thread):
    assert benchmark.matmul_gflops(32, torch.float32, torch.device("cpu"), repeats=2) > 0
    reason = benchmark.native_half(torch.bfloat16, torch.device("cpu"))
    native = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    assert reason == (None if native else "no native bf16 on this CPU")
    assert benchmark.native_half(torch.float16, torch.device("cpu")) == "not measured on cpu"
    args = benchmark.build_parser().parse_args(["--data-dir", str(CORPUS), "--matmul-n", "48", "train.device=cpu"])
    peak = benchmark.measure_peak(args)
    assert peak["matmul_n"] == 48 and peak["fp32_gflops"] > 0 and peak["fp16_gflops"] is None
    assert (peak["bf16_gflops"] is None) == (not native)


def test_report_efficiency_fields():
    """GFLOP/s = FLOPs per token (sentence) x the median rate; the share is of the precision's peak."""
    peak = {"matmul_n": 2048, "fp32_gflops": 100.0, "bf16_gflops": None, "bf16_note": "no native bf16 on this CPU"}
    training = {
        **{"tokens_per_sec": 2000, "tokens_per_sec_windows": [1900, 2000, 2100], "tokens_per_sec_runs": [2000]},
        **{"batch_tokens": 300, "sentences_per_batch": 20.0, "threads": 2, "device": "cpu", "precision": "bf16"},
        **{"parameters": 1234, "peak_rss_mb": 100, "flops_per_token": 5_000_000},
        "uncounted_ops": {"aten.mkldnn_rnn_layer": "analytic", "aten.tanh": "not counted"},
    }
    search = {"sentences_per_sec": 50.0, "bleu": 1.0, "flops_per_sentence": 40_000_000}
    decoding = {
        "sentences": 500,
        "peak_rss_mb": 80,
        "greedy": dict(search),
        "beam5": dict(search, sentences_per_sec=10.0),
    }
    report = {"peak": peak, "training": training, "decoding": decoding}
    benchmark.add_efficiency(report)
    assert training["gflops"] == 10.0 and training["peak_used"] == "fp32" and training["share_of_peak"] == 0.1
    assert decoding["greedy"]["gflops"] == 2.0 and decoding["beam5"]["share_of_peak"] == 0.004
    table = benchmark.markdown(report)
    assert "| matmul peak fp32 (bf16), GFLOP/s, n=2048 | 100.0 (no native bf16 on this CPU) |" in table
    assert "| training GFLOP/s (share of peak) | 10.0 (10.0% of the fp32 peak); 5,000,000 FLOPs/token |" in table
    assert "| decoding beam5 GFLOP/s (share of peak) | 0.4 (0.4% of the fp32 peak) |" in table
    assert "| ops with no FlopCounterMode formula, counted analytically | aten.mkldnn_rnn_layer |" in table
    peak["bf16_gflops"] = 400.0  # a CPU with native bf16: bf16 training is held to that peak
    benchmark.add_efficiency(report)
    assert training["peak_used"] == "bf16" and training["share_of_peak"] == 0.025
    peer_training = {k: training[k] for k in ("tokens_per_sec", "tokens_per_sec_windows", "tokens_per_sec_runs")}
    report["peer"] = {"name": "joeynmt", "version": "2.3.0", "training": peer_training, "decoding": {}}
    report["peer"]["training"].update(sentences_per_batch=20.0, peak_rss_mb=90, threads=2)
    report["ratios"] = benchmark.ratios(report)
    table = benchmark.markdown(report)
    assert "| matmul peak fp32 (bf16), GFLOP/s, n=2048 | 100.0 (400.0) | — | |" in table
    assert "| training GFLOP/s (share of peak) | 10.0 (2.5% of the bf16 peak); 5,000,000 FLOPs/token | — | |" in table
    json.dumps(report)  # the report stays JSON
    # fp32 training with bf16 products (train.matmul_precision): 1M FLOPs/token at 100 GFLOP/s and 4M at 400 would
    # take 20 us a token; at 2000 tokens/s one takes 500 us: 4% of the peaks
    training.update(precision="fp32", bf16_flops_per_token=4_000_000)
    benchmark.add_efficiency(report)
    assert training["peak_used"] == "fp32+bf16" and training["bf16_share_of_flops"] == 0.8
    assert training["share_of_peak"] == 0.04


def test_bf16_matrix_products_are_counted_apart():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    count = benchmark.count_flops(lambda: (a.bfloat16() @ b.bfloat16(), torch.addmm(torch.zeros(3), a, b)))
    assert count.total == 2 * 2 * 4 * 8 * 3 and count.bf16 == 2 * 4 * 8 * 3


# --- the Joey NMT peer: pure parts only (no Joey venv, no network) ---------------------------------------

JOEY_TRAIN_LOG = """\
2026-11-26 02:20:01,000 - INFO - joeynmt.model - Total params: 23456789
2026-11-26 02:20:05,000 - INFO - joeynmt.training - EPOCH 1
2026-11-26 02:20:20,000 - INFO - joeynmt.training - Epoch   1, Step:        5, Batch Loss:   40.1, Batch Acc: 0.01, \
Tokens per Sec:      512, Lr: 0.001000
2026-11-26 02:20:32,000 - INFO - joeynmt.training - Epoch   1, Step:       10, Batch Loss:   38.0, Batch Acc: 0.02, \
Tokens per Sec:      690, Lr: 0.001000
2026-11-26 02:20:44,000 - INFO - joeynmt.training - Epoch   1, Step:       15, Batch Loss:   36.5, Batch Acc: 0.03, \
Tokens per Sec:      710, Lr: 0.001000
2026-11-26 02:20:56,000 - INFO - joeynmt.training - Epoch   1, Step:       20, Batch Loss:   35.0, Batch Acc: 0.04, \
Tokens per Sec:      700, Lr: 0.001000
"""

JOEY_TEST_LOG = """\
2026-11-26 03:00:00,000 - INFO - joeynmt.prediction - Decoding on test set... (device: cpu, n_gpu: 0, use_ddp: False)
2026-11-26 03:00:00,100 - INFO - joeynmt.prediction - Predicting 1000 example(s)... (Greedy decoding with ...)
2026-11-26 03:00:20,100 - INFO - joeynmt.prediction - Generation took 20.0000[sec].
2026-11-26 03:00:21,000 - INFO - joeynmt.prediction - Evaluation result (greedy): bleu:  35.20, 20.9000[sec]
"""


def test_joey_log_parsers():
    assert joeynmt_peer.parse_train_log(JOEY_TRAIN_LOG) == [(5, 512.0), (10, 690.0), (15, 710.0), (20, 700.0)]
    assert joeynmt_peer.warmup_windows(3, 5) == 1 and joeynmt_peer.warmup_windows(0, 5) == 1
    assert joeynmt_peer.warmup_windows(7, 5) == 2
    summary = joeynmt_peer.training_summary(JOEY_TRAIN_LOG, warmup_steps=3, logging_freq=5)
    assert summary["tokens_per_sec_windows"] == [690, 710, 700] and summary["tokens_per_sec"] == 700
    assert summary["warmup_windows_dropped"] == [512] and summary["parameters"] == 23456789
    test = joeynmt_peer.parse_test_log(JOEY_TEST_LOG)["test"]
    assert test["sentences"] == 1000 and test["generation_seconds"] == 20.0 and test["bleu"] == 35.2


def test_joey_output_length(tmp_path):
    (tmp_path / "hyps.test").write_text("a dog runs .\n\ntwo men\n", encoding="utf-8")
    assert joeynmt_peer.mean_words(tmp_path / "hyps.test") == 2.0  # (4 + 0 + 2) / 3
    assert joeynmt_peer.mean_words(tmp_path / "missing") is None


def test_joey_inputs_and_config(tmp_path, spm_cache):
    config = compose(
        "multi30k_gru",
        [
            f"data.dir={CORPUS}",
            "data.src_lang=de",
            "data.tgt_lang=en",
            *TINY[2:5],
            f"tokenizer.cache_dir={spm_cache}",
            f"data.cache_dir={spm_cache}",
            "data.test_prefix=test",
        ],
    )
    inputs = joeynmt_peer.write_inputs(config, tmp_path / "joey")
    assert (tmp_path / "joey" / "train.de").read_text().count("\n") == 300
    pieces = (tmp_path / "joey" / "vocab.txt").read_text().splitlines()
    assert pieces[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and len(pieces) > 50
    cfg = joeynmt_peer.joey_config(config, inputs, tmp_path / "model", batch_size=128, updates=15, logging_freq=5)
    path = joeynmt_peer.write_yaml(cfg, tmp_path / "train.yaml")
    loaded = yaml.safe_load(path.read_text())
    assert loaded["training"]["updates"] == 15 and loaded["training"]["batch_type"] == "sentence"
    tokens = joeynmt_peer.joey_config(config, inputs, tmp_path / "model", batch_size=4000, batch_type="token")
    assert (tokens["training"]["batch_type"], tokens["training"]["batch_size"]) == ("token", 4000)
    # without --peer-batch-size Joey's token batches get our budget (multi30k_gru: train.batch_tokens=4000)
    parsed = benchmark.build_parser().parse_args(["--data-dir", str(CORPUS), "--peer", "joeynmt"])
    assert benchmark.default_peer_batch_size(parsed) == 4000  # (the config above overrides it: TINY)
    parsed.peer_batch_type = "sentence"
    assert benchmark.default_peer_batch_size(parsed) == 128
    assert loaded["training"]["scheduling"] != "plateau"
    enc, dec = loaded["model"]["encoder"], loaded["model"]["decoder"]
    assert enc["type"] == dec["type"] == "recurrent" and enc["rnn_type"] == "gru" and enc["bidirectional"]
    assert dec["attention"] == "bahdanau" and enc["hidden_size"] == 512 and enc["embeddings"]["embedding_dim"] == 256
    assert loaded["data"]["src"]["tokenizer_cfg"]["model_file"] == inputs["model_file"]
    assert Path(loaded["data"]["train"] + ".en").is_file()
    lengths = [5, 6, 7, 8, 9, 10] * 100
    budget = benchmark.budget_for_sentences(lengths, lengths, 32)
    assert len(lengths) / len(token_batches(lengths, lengths, budget)) >= 32
    assert len(lengths) / len(token_batches(lengths, lengths, budget - 1)) < 32


def test_benchmark_speaks_the_peer_command_line(tmp_path):
    """What benchmark.py runs, joeynmt_peer.py parses: the experiment, the overrides, each measurement's options."""
    args = benchmark.build_parser().parse_args(
        [
            *("--data-dir", "DATA", "--experiment", "gru", "--src", "en", "--tgt", "de", "--windows", "3"),
            *("--window-steps", "4", "--warmup-steps", "2", "--decode-batch-size", "32", "--peer", "joeynmt"),
            *("--peer-checkpoint", "JOEY", "--peer-batch-size", "16", "--peer-venv", "VENV", "--peer-timeout", "60"),
            *("train.threads=1", "+tokenizer.extra=1"),
        ]
    )
    for command in (
        benchmark.peer_command(args, "prepare", tmp_path),
        benchmark.peer_train_command(args, tmp_path),
        benchmark.peer_decode_command(args, tmp_path),
    ):
        assert command[:2] == [sys.executable, str(BENCHMARKS / "joeynmt_peer.py")]
        parsed = joeynmt_peer.parse_args(command[2:])
        assert (parsed.work, parsed.data_dir, parsed.experiment, parsed.src, parsed.tgt, parsed.venv) == (
            *(str(tmp_path), "DATA", "gru", "en", "de", "VENV"),
        )
        assert parsed.overrides == ["train.threads=1", "+tokenizer.extra=1"]
    train = joeynmt_peer.parse_args(benchmark.peer_train_command(args, tmp_path)[2:])
    assert (train.command, train.batch_size, train.warmup_steps, train.windows, train.window_steps) == (
        *("measure-train", 16, 2, 3, 4),
    )
    assert train.batch_type == "token"  # Joey at its best by default: its token batches
    args.peer_batch_type = "sentence"
    assert joeynmt_peer.parse_args(benchmark.peer_train_command(args, tmp_path)[2:]).batch_type == "sentence"
    decode = joeynmt_peer.parse_args(benchmark.peer_decode_command(args, tmp_path)[2:])
    assert (decode.command, decode.checkpoint, decode.batch_size, decode.timeout) == ("measure-decode", "JOEY", 32, 60)
    # overrides may also sit between the options
    mixed = joeynmt_peer.parse_args(["write-config", "OUT", "a.b=1", "--updates", "5", "c.d=2", "--data-dir", "D"])
    assert mixed.overrides == ["a.b=1", "c.d=2"] and mixed.updates == 5


FAKE_JOEY = '''\
#!{python}
"""Stands in for a Joey NMT venv's python: the version probe, `-m joeynmt train` and `-m joeynmt test`."""
import sys
from pathlib import Path

import yaml

if sys.argv[1] == "-c":
    print("2.3.0")
    sys.exit()
mode, cfg = sys.argv[3], yaml.safe_load(Path(sys.argv[4]).read_text())
if mode == "train":
    print("INFO - joeynmt.model - Total params: 1234")
    freq = cfg["training"]["logging_freq"]
    for step in range(freq, cfg["training"]["updates"] + 1, freq):
        rate = 500 + step
        print(f"Epoch   1, Step: {{step:8d}}, Batch Loss: 1.0, Batch Acc: 0.1, Tokens per Sec: {{rate}}, Lr: 0.001")
else:
    n = len(Path(cfg["data"]["test"] + ".de").read_text().splitlines())
    Path(sys.argv[sys.argv.index("--output-path") + 1] + ".test").write_text("a dog runs .\\n" * n)
    print("Decoding on test set...")
    print(f"Predicting {{n}} example(s)... (Greedy decoding with ...)")
    print("Generation took 2.0000[sec].")
    print("Evaluation result (greedy): bleu:  12.50, 2.1000[sec]")
'''


@pytest.mark.slow
def test_harness_with_a_peer(tmp_path, spm_cache):
    """The whole --peer route, benchmark.py -> joeynmt_peer.py -> "Joey" (a stand-in), with JSON in between."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(FAKE_JOEY.format(python=sys.executable))
    (venv / "bin" / "python").chmod(0o755)
    model_dir = tmp_path / "joey_model"  # a trained Joey model: its config.yaml and a checkpoint
    model_dir.mkdir()
    (model_dir / "best.ckpt").write_bytes(b"")
    (model_dir / "config.yaml").write_text("data: {src: {lang: de}, trg: {lang: en}}\ntesting: {}\n")
    out = tmp_path / "bench.json"
    overrides = [o for o in TINY if not o.startswith("train.batch_tokens=")]  # ours: a budget of 8 sentences
    overrides += [f"tokenizer.cache_dir={spm_cache}", f"data.cache_dir={spm_cache}", "data.test_prefix=test"]
    proc = subprocess.run(
        [
            *(sys.executable, BENCHMARKS / "benchmark.py", "--data-dir", CORPUS),
            *("--experiment", "gru", "--warmup-steps", "1", "--windows", "2", "--window-steps", "2", "--out", out),
            *("--peer", "joeynmt", "--peer-venv", venv, "--peer-checkpoint", model_dir, "--peer-batch-size", "8"),
            *("--peer-batch-type", "sentence"),
            *("--repeats", "1", *overrides),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    peer = report["peer"]
    assert (peer["name"], peer["version"]) == ("joeynmt", "2.3.0")
    assert peer["training"]["tokens_per_sec_windows"] == [504, 506] and peer["training"]["parameters"] == 1234
    assert peer["decoding"]["sentences"] == 500 and peer["decoding"]["greedy"]["sentences_per_sec"] == 250.0
    assert peer["decoding"]["beam5"]["words_per_sentence"] == 4.0
    data = prepare_data(compose("gru", [f"data.dir={CORPUS}", *overrides]))
    lengths = data.train.src_lengths, data.train.tgt_lengths
    assert report["training"]["batch_tokens"] == benchmark.budget_for_sentences(*lengths, 8)
    assert report["training"]["tokens_per_sec"] > 0
    assert report["ratios"]["training_tokens_per_sec"] > 0 and report["ratios"]["greedy_sentences_per_sec"] is None
    assert "| measurement | ours | joeynmt 2.3.0 | ours/theirs |" in proc.stdout
