"""Export a trained model for a runtime without PyTorch: ONNX graphs, the subword models and the settings.

    python -m seq2seq.export CHECKPOINT [CHECKPOINT ...] --format onnx --out DIR

CHECKPOINT is a checkpoint file or a run folder (its test model); several export as an ensemble, member by
member. DIR gets `settings.json` (the model's shape and decode defaults), the SentencePiece model(s)
(`source.model`, `target.model`) and per member `member_N/encoder.onnx` and `member_N/decoder_step.onnx`
(`seq2seq.model.onnx_export`). Translate with it without PyTorch (numpy, onnxruntime and sentencepiece):
`python -m seq2seq.portable DIR < input > output`, or `python -m seq2seq.translate DIR`. The export is
written beside DIR and moved into place when complete, so a failed export never leaves half a folder.
Needs the `export` extra (onnx, onnxscript, onnxruntime); a problem is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("seq2seq.export")

FORMAT = "seq2seq-onnx"  # settings.json's "format" (seq2seq.portable.translator reads it)
EXPORT_VERSION = 1


def export_onnx(checkpoints: list[str], out: Path) -> Path:
    """Write the export of `checkpoints` to `out` (replacing an earlier export there); returns `out`."""
    import onnx

    from seq2seq.decoding.ensemble import Ensemble
    from seq2seq.decoding.loading import MAX_SOURCE_TOKENS, load_models
    from seq2seq.model.onnx_export import OPSET, encoder_graph, export_decoder_step
    from seq2seq.run_folders import checkpoint_path

    paths = [checkpoint_path(c) for c in checkpoints]
    model, tokenizer, config = load_models(paths, "cpu")
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for number, member in enumerate(members):
            folder = staging / f"member_{number}"
            folder.mkdir()
            onnx.save(encoder_graph(member), str(folder / "encoder.onnx"))
            with contextlib.redirect_stdout(sys.stderr):  # the exporter reports its progress on stdout
                export_decoder_step(member, folder / "decoder_step.onnx")
        models = tokenizer.to_dict()
        (staging / "source.model").write_bytes(models["src"])
        (staging / "target.model").write_bytes(models["tgt"] if models["tgt"] is not None else models["src"])
        m = config.model
        settings = {
            "format": FORMAT,
            "version": EXPORT_VERSION,
            "opset": OPSET,
            "members": [f"member_{n}" for n in range(len(members))],
            "source_model": "source.model",
            "target_model": "target.model",
            "joint": tokenizer.joint,
            "cell": m.cell,
            "attention": m.attention,
            "encoder_layers": m.encoder_layers,
            "decoder_layers": m.decoder_layers,
            "bidirectional": m.bidirectional,
            "hidden_size": m.hidden_size,
            "embedding_size": m.embedding_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "readout_size": members[0].decoder.readout.out_features,
            "input_feeding": members[0].decoder.input_feeding,
            "languages": {"source": config.data.src_lang, "target": config.data.tgt_lang},
            "decode": {
                key: getattr(config.decode, key)
                for key in ("beam_size", "alpha", "max_len_a", "max_len_b", "nbest", "batch_size", "coverage_penalty")
            },
            "max_source_tokens": MAX_SOURCE_TOKENS,
            "exported_from": [str(p) for p in paths],
            "exported": time.strftime("%Y-%m-%d"),
        }
        (staging / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace(staging: Path, out: Path) -> None:
    """Move the finished export into place; an earlier export at `out` goes, anything else there is refused."""
    if out.exists():
        if not (out / "settings.json").is_file():
            raise ValueError(f"--out {out} exists and is not an earlier export; name a new folder")
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="+", help="a checkpoint file or a run folder; several: an ensemble")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="the only format so far: onnx")
    parser.add_argument("--out", required=True, help="the folder to write (an earlier export there is replaced)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        print(f"seq2seq.export: {exc.name} is missing; pip install 'seq2seq[export]'", file=sys.stderr)
        return 2
    from seq2seq.checkpoint import CheckpointError

    try:
        out = export_onnx(args.checkpoint, Path(args.out))
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"seq2seq.export: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("exported to %s (%.1f MB); translate: python -m seq2seq.portable %s < input", out, size / 1e6, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
