"""`seq2seq.serve --backend onnx`: the server's decode function over an export folder (`python -m seq2seq.export`).

`OnnxTranslator` answers the batcher and the routes as `app.Translator` does, with the PyTorch-free translator
(`seq2seq.portable`) underneath: greedy and beam search with n-best and the length penalty. Attention weights,
sampling, required phrases, prefixes and target languages are the PyTorch backend's; a request that asks for
one is refused (422) naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from seq2seq.portable.translator import ExportedTranslator
from seq2seq.serving.errors import RequestError

if TYPE_CHECKING:  # for annotations only: the app imports PyTorch, this backend does not need it
    from seq2seq.serving.app import DecodeSettings, Line

NOT_HERE = "not available with --backend onnx; serve the checkpoint with the PyTorch backend for it"


class OnnxTranslator:
    """Decodes lists of lines into the API's per-line entries with an `ExportedTranslator`."""

    tokenizer = None  # no target languages: parse_request refuses target_lang

    def __init__(self, folder: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        self.exported = ExportedTranslator(folder, threads, providers)
        self.decode = SimpleNamespace(**self.exported.decode)  # the export's decode defaults (alpha, beam_size, ...)

    def attention_problem(self, beam_size: int) -> str | None:
        return f"attention weights are {NOT_HERE}"

    def check(self, settings: DecodeSettings, lines: Sequence[Line]) -> None:
        """Refuse what this backend cannot do, before the request joins a batch."""
        if settings.sampling:
            raise RequestError(422, "sampling", f"sampling is {NOT_HERE}")
        for i, line in enumerate(lines):
            if getattr(line, "phrases", ()):
                raise RequestError(422, f"constraints[{i}]", f"required phrases are {NOT_HERE}")
            if getattr(line, "prefix", None):
                raise RequestError(422, f"prefixes[{i}]", f"prefixes are {NOT_HERE}")

    def __call__(self, settings: DecodeSettings, lines: Sequence[Line | str]) -> list[dict[str, Any]]:
        texts = [line if isinstance(line, str) else line.text for line in lines]
        found = self.exported.translate(texts, settings.beam_size, settings.nbest, settings.alpha)
        return [
            {
                "hypotheses": [
                    {"text": text, "score": round(h.score, 4), "log_prob": round(h.log_prob, 4)}
                    for h, text in zip(hyps, texts_out)
                ]
            }
            for hyps, texts_out in zip(found, self.exported.detokenize(found))
        ]

    def info(self) -> dict[str, Any]:
        """What GET /info reports for an export."""
        s = self.exported.settings
        return {
            "checkpoints": [{"path": str(self.exported.folder), "file": str(self.exported.folder), "test_bleu": None}],
            "model": {
                "cell": s["cell"],
                "attention": s["attention"],
                "encoder_layers": s["encoder_layers"],
                "decoder_layers": s["decoder_layers"],
                "hidden_size": s["hidden_size"],
                "embedding_size": s.get("embedding_size"),
                "bidirectional": s["bidirectional"],
                "parameters": s.get("parameters", 0),
                "models": len(s["members"]),
            },
            "languages": s["languages"],
            "target_languages": [],
            "vocabulary": {
                "source": self.exported.tokenizer.src_vocab_size,
                "target": self.exported.tokenizer.tgt_vocab_size,
                "joint": bool(s.get("joint")),
            },
            "device": "onnxruntime",
            "backend": "onnx",
        }
