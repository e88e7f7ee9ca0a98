"""An export folder (`python -m seq2seq.export`) as a translator: numpy, onnxruntime and sentencepiece only
(the package's tokenizer, `seq2seq.data.tokenizer`, needs no more).

    translator = ExportedTranslator("PATH/TO/export")
    translator.translate(["Ein Mann fährt Fahrrad."], beam_size=5)   # [[Hypothesis(tokens, log_prob, score)]]
    translator.detokenize(hypotheses)                                 # the texts

The folder holds `settings.json` (the model's shape and its decode defaults), the SentencePiece model(s) and,
per model of the (ensemble) export, `encoder.onnx` and `decoder_step.onnx` (`seq2seq.model.onnx_export` says
what goes in and out). Sentences are tokenized as `seq2seq.translate` does (a line starting with tags such as
<2fr> gets their ids first, sources are cut at `max_source_tokens`), batched by length, encoded once per batch,
and searched step by step (`seq2seq.portable.search`); an ensemble's log-probabilities are the mean of its
members' (the log of their geometric mean), as in PyTorch. An empty line gets an empty translation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np
import onnxruntime as ort

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.portable.search import Hypothesis, beam_search, greedy_search
from seq2seq.vocab import EOS_ID, PAD_ID

FORMAT = "seq2seq-onnx"
MEMORY = ("values", "keys", "mask", "context")  # a decoder row's memory: its sentence's, fixed for the search


class ExportError(ValueError):
    """A folder that is not a readable export; the message names it."""


class Member:
    """One model of the export: its two ONNX sessions."""

    def __init__(self, folder: Path, options: ort.SessionOptions, providers: Sequence[str]) -> None:
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options, providers=list(providers))
        self.decoder = ort.InferenceSession(str(folder / "decoder_step.onnx"), options, providers=list(providers))
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]
        self.decoder_inputs = {i.name for i in self.decoder.get_inputs()}


class ExportedTranslator:
    """Translate with an export folder; `threads` bounds onnxruntime's threads per session (None: its default)."""

    def __init__(self, folder: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        settings_path = self.folder / "settings.json"
        try:
            self.settings: dict[str, Any] = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{self.folder} is not an export folder (no readable settings.json: {exc})") from None
        if self.settings.get("format") != FORMAT:
            raise ExportError(f"{settings_path} is not a seq2seq export (format {self.settings.get('format')!r})")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        chosen = list(providers) if providers is not None else ["CPUExecutionProvider"]
        self.members = [Member(self.folder / name, options, chosen) for name in self.settings["members"]]
        source = (self.folder / self.settings["source_model"]).read_bytes()
        target = (self.folder / self.settings["target_model"]).read_bytes()
        self.tokenizer = Tokenizer(source, None if self.settings.get("joint") else target)  # as the checkpoint's
        self.decode = dict(self.settings["decode"])

    # ---------------------------------------------------------------------------------------------- text
    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Source ids of the stripped lines (tags such as <2fr> first), cut at `max_source_tokens`."""
        limit = self.settings["max_source_tokens"]
        return [ids[:limit] for ids in self.tokenizer.encode_src([line.strip() for line in lines])]

    def detokenize(self, hypotheses: Sequence[Sequence[Hypothesis]]) -> list[list[str]]:
        return [self.tokenizer.decode_tgt([h.tokens for h in hyps]) for hyps in hypotheses]

    # ---------------------------------------------------------------------------------------------- search
    def translate(
        self,
        lines: Sequence[str],
        beam_size: int | None = None,
        nbest: int | None = None,
        alpha: float | None = None,
        batch_size: int | None = None,
        coverage_penalty: float | None = None,
    ) -> list[list[Hypothesis]]:
        """The `nbest` best hypotheses of every line, in input order (defaults: the export's decode settings;
        `coverage_penalty`: GNMT's, beam search with attention only)."""
        k = beam_size or max(self.decode["beam_size"], nbest or 1)  # n-best widens the default beam, as translate
        n = nbest or (1 if beam_size else self.decode["nbest"])
        if n > k:
            raise ValueError(f"nbest ({n}) cannot exceed the beam size ({k})")
        a = self.decode["alpha"] if alpha is None else alpha
        size = batch_size or self.decode["batch_size"]
        beta = self.decode.get("coverage_penalty", 0.0) if coverage_penalty is None else coverage_penalty
        if beta > 0 and self.settings["attention"] == "none" and k > 1:
            raise ValueError("a coverage penalty needs a model with attention (this export has none)")
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        ids = self.encode([lines[i] for i in todo])
        order = sorted(range(len(ids)), key=lambda p: len(ids[p]))
        for start in range(0, len(order), size):
            positions = order[start : start + size]
            found = self._batch([ids[p] for p in positions], k, a, n, beta)
            for p, hyps in zip(positions, found):
                results[todo[p]] = hyps
        return results

    def _batch(
        self, sources: list[list[int]], k: int, alpha: float, nbest: int, coverage_penalty: float = 0.0
    ) -> list[list[Hypothesis]]:
        lengths = np.array([len(s) + 1 for s in sources], dtype=np.int64)  # EOS included
        src = np.full((len(sources), int(lengths.max())), PAD_ID, dtype=np.int64)
        for row, ids in enumerate(sources):
            src[row, : len(ids)] = ids
            src[row, len(ids)] = EOS_ID
        decode = self.decode
        max_lengths = np.maximum(1, (decode["max_len_a"] * (lengths - 1) + decode["max_len_b"]).astype(np.int64))
        states = [self._start(member, src, lengths, k) for member in self.members]

        def step(prev: np.ndarray) -> np.ndarray:
            log_probs = [self._step(member, state, prev) for member, state in zip(self.members, states)]
            return log_probs[0] if len(log_probs) == 1 else np.mean(log_probs, axis=0)

        row_sentence = np.repeat(np.arange(len(sources)), k)  # (rows,) the sentence each row decodes

        def reorder(rows: np.ndarray) -> None:
            """The hypotheses move: their decoder states follow; the memory (one row per sentence) changes only
            when sentences leave."""
            nonlocal row_sentence
            sentences = int(row_sentence.max()) + 1  # the memory's rows now
            kept, renumbered = np.unique(row_sentence[rows], return_inverse=True)  # rows stay sentence-major
            for state in states:
                state["state"], state["feed"] = state["state"][:, rows], state["feed"][rows]
                if len(kept) < sentences:
                    for name in MEMORY:
                        state[name] = state[name][kept]
            row_sentence = renumbered.reshape(-1)

        def attention() -> np.ndarray:  # the last step's weights (rows, src_len): an ensemble's mean
            weights = [state["attention"] for state in states]
            return weights[0] if len(weights) == 1 else np.mean(np.stack(weights).astype(np.float32), axis=0)

        if k == 1:
            return [[h] for h in greedy_search(step, reorder, max_lengths)]
        return beam_search(step, reorder, max_lengths, k, alpha, nbest, coverage_penalty, attention, lengths)

    def _start(self, member: Member, src: np.ndarray, lengths: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """A member's encoder run: the memory (one row per sentence) and the first decoder state, `k` rows per
        sentence."""
        encoded = dict(zip(member.encoder_outputs, member.encoder.run(None, {"src": src, "src_lengths": lengths})))
        return {
            "state": np.repeat(encoded["state"], k, axis=1),
            "feed": np.zeros((len(src) * k, self.settings["readout_size"]), dtype=np.float32),
            "values": encoded["values"],
            "keys": encoded.get("keys", encoded["values"]),
            "mask": encoded["mask"],
            "context": encoded["context"],
        }

    def _step(self, member: Member, state: dict[str, np.ndarray], prev: np.ndarray) -> np.ndarray:
        feeds = {name: value for name, value in state.items() if name in member.decoder_inputs}
        feeds["prev"] = prev.astype(np.int64)
        log_probs, new_state, new_feed, attention = member.decoder.run(None, feeds)
        state["state"], state["feed"], state["attention"] = new_state, new_feed, attention
        return log_probs


NBEST_SEPARATOR = " ||| "


def translate_file(
    translator: ExportedTranslator,
    source: BinaryIO,
    target: TextIO,
    beam_size: int | None = None,
    nbest: int | None = None,
    alpha: float | None = None,
    batch_size: int | None = None,
    chunk: int = 1000,
) -> int:
    """Translate `source` line by line into `target`, `chunk` lines at a time: one output line per input line
    (n-best joined by " ||| "), as `seq2seq.translate` writes them. Returns the count."""
    lines = (raw.decode("utf-8", errors="replace").rstrip("\n") for raw in source)
    count = 0
    while part := list(islice(lines, chunk)):
        found = translator.translate(part, beam_size, nbest, alpha, batch_size)
        for texts in translator.detokenize(found):
            target.write(NBEST_SEPARATOR.join(" ".join(t.splitlines()) for t in texts) + "\n")
        target.flush()
        count += len(part)
    return count
