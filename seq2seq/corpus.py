"""Parallel corpora: local files or the Hugging Face hub, read with `datasets`, cleaned and aligned.

Every split is read through `datasets.load_dataset` (the "text" builder for plain and TSV files,
"json" for JSONL, a hub name for the hub) and turned into two aligned Python lists of sentences.

Local layouts (`data.source=local`, the folder is `data.dir`; every file may also end in `.gz`):

* ``text``  -- ``PREFIX.SRC`` and ``PREFIX.TGT``, one sentence per line; line N of one file is the
  translation of line N of the other (blank lines are kept so that the files stay aligned).
* ``tsv``   -- ``PREFIX.tsv`` with ``source<TAB>target`` per line; no header, no quoting (a ``"`` is a
  literal character); columns after the second are ignored.
* ``jsonl`` -- ``PREFIX.jsonl`` with ``{"translation": {"de": ..., "en": ...}}`` or ``{"de": ..., "en": ...}``
  per line.

Local files are checked to be valid UTF-8 first, so that a bad byte is reported with its file and line
instead of the builder's generic "An error occurred while generating the dataset".

Length filtering in subword tokens needs the tokenizer and happens elsewhere; `length_filter` is the
helper it uses.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.config import DataConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
REPO_ROOT = Path(__file__).resolve().parents[1]
HUB_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "val", "valid", "dev"), "test": ("test",)}
LOCAL_FILES_HINT = (
    "point at local files instead: data=multi30k data.dir=PATH, "
    "or data.source=local data.dir=PATH data.format=text|tsv|jsonl"
)
_CHUNK_BYTES = 16 << 20
_TRUE = {"1", "ON", "YES", "TRUE"}


class CorpusError(ValueError):
    """A corpus cannot be found or read; the message names the file (and line) or the hub dataset."""


@dataclass
class ParallelCorpus:
    """One split: `src[i]` is translated by `tgt[i]`."""

    src: list[str]
    tgt: list[str]

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"unaligned corpus: {len(self.src)} source vs {len(self.tgt)} target sentences")

    def __len__(self) -> int:
        return len(self.src)


# ----------------------------------------------------------------------------------------------- public API


def load_corpus(cfg: DataConfig, splits: Sequence[str] = SPLITS) -> dict[str, ParallelCorpus]:
    """Load several splits (a hub dataset is fetched once for all of them)."""
    hub = _load_hub_dataset(cfg) if cfg.resolved_source == "hub" else None
    return {split: _load_split(cfg, split, hub) for split in splits}


def load_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    """Load one split ("train", "valid" or "test"), cleaned; `max_train_pairs` applies to "train"."""
    return _load_split(cfg, split, None)


READING_VERSION = 1  # bump when reading or cleaning changes what a file yields: the fingerprints change with it


def fingerprint(cfg: DataConfig, split: str = "train") -> str | None:
    """A hash of a local split's file bytes (read in 1 MB blocks, never as lines) and of the settings that
    shape what is read from them; None for a hub dataset, whose text is the only way to tell.

    It names the caches built from the split (tokenizer, encoded pairs), so that a run whose caches exist
    needs not read the text at all; any change to the files or those settings gives a new fingerprint.
    """
    if cfg.resolved_source != "local" or not cfg.dir:
        return None
    folder, prefix = resolve_data_dir(cfg.dir), _prefix(cfg, split)
    names = {"text": [f"{prefix}.{cfg.src_lang}", f"{prefix}.{cfg.tgt_lang}"], "tsv": [f"{prefix}.tsv"]}
    names["jsonl"] = [f"{prefix}.jsonl"]
    if cfg.format not in names:
        return None
    settings = {"version": READING_VERSION, "format": cfg.format, "src": cfg.src_lang, "tgt": cfg.tgt_lang}
    if split == "train":
        settings["max_train_pairs"] = cfg.max_train_pairs
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in (_find_file(folder, name) for name in names[cfg.format]):
        digest.update(b"\x00file\x00")
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:20]


def resolve_data_dir(path: str) -> Path:
    """An existing folder: absolute as given, relative against the cwd first, then the repository root."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, REPO_ROOT / given]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise CorpusError(f"data folder {path!r} not found; tried {tried}")


def clean_pairs(src: Sequence[str], tgt: Sequence[str], *, where: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Strip both sides and drop pairs with an empty side; log and return the counts.

    Returns (src, tgt, {"total": n, "kept": k, "empty": n - k}).
    """
    if len(src) != len(tgt):
        raise ValueError(f"{where}: {len(src)} source vs {len(tgt)} target sentences")
    kept_src, kept_tgt = [], []
    for s, t in zip(src, tgt):
        s, t = s.strip(), t.strip()
        if s and t:
            kept_src.append(s)
            kept_tgt.append(t)
    counts = {"total": len(src), "kept": len(kept_src), "empty": len(src) - len(kept_src)}
    log.info("%s: kept %d of %d pairs (%d with an empty side)", where, counts["kept"], counts["total"], counts["empty"])
    return kept_src, kept_tgt, counts


def length_filter(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_length: int, max_ratio: float
) -> tuple[list[int], dict[str, int]]:
    """Indices of the pairs to keep, and why the others were dropped.

    A pair is "too_long" when either side exceeds `max_length`; otherwise "bad_ratio" when
    max(a, b) / max(1, min(a, b)) exceeds `max_ratio`. Each dropped pair is counted once.
    """
    if len(src_lengths) != len(tgt_lengths):
        raise ValueError(f"{len(src_lengths)} source lengths vs {len(tgt_lengths)} target lengths")
    kept: list[int] = []
    counts = {"too_long": 0, "bad_ratio": 0}
    for i, (a, b) in enumerate(zip(src_lengths, tgt_lengths)):
        if a > max_length or b > max_length:
            counts["too_long"] += 1
        elif max(a, b) / max(1, min(a, b)) > max_ratio:
            counts["bad_ratio"] += 1
        else:
            kept.append(i)
    return kept, counts


# ------------------------------------------------------------------------------------------------ one split


def _load_split(cfg: DataConfig, split: str, hub: Any | None) -> ParallelCorpus:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    prefix = _prefix(cfg, split)
    source = cfg.resolved_source
    if source == "hub":
        src, tgt, origin = _read_hub_split(cfg, split, prefix, hub if hub is not None else _load_hub_dataset(cfg))
    elif source == "local":
        src, tgt, origin = _read_local(cfg, prefix)
    else:
        raise CorpusError(f"data.source={cfg.source!r} is not supported; use auto, local or hub")
    src, tgt, counts = clean_pairs(src, tgt, where=f"{split} ({origin})")
    if not src:
        raise CorpusError(
            f"{split} ({origin}): no sentence pairs left after cleaning ({counts['total']} lines, "
            f"{counts['empty']} with an empty side)"
        )
    if split == "train" and cfg.max_train_pairs is not None and len(src) > cfg.max_train_pairs:
        log.info("train: using the first %d of %d pairs (data.max_train_pairs)", cfg.max_train_pairs, len(src))
        src, tgt = src[: cfg.max_train_pairs], tgt[: cfg.max_train_pairs]
    return ParallelCorpus(src, tgt)


def _prefix(cfg: DataConfig, split: str) -> str:
    return {"train": cfg.train_prefix, "valid": cfg.valid_prefix, "test": cfg.test_prefix}[split]


# ---------------------------------------------------------------------------------------------- local files


def _read_local(cfg: DataConfig, prefix: str) -> tuple[list[str], list[str], str]:
    if not cfg.dir:
        raise CorpusError("data.dir must name a folder when data.source=local")
    folder = resolve_data_dir(cfg.dir)
    readers = {"text": _read_text_pair, "tsv": _read_tsv, "jsonl": _read_jsonl}
    if cfg.format not in readers:
        raise CorpusError(f"data.format={cfg.format!r} is not supported; choose one of {sorted(readers)}")
    return readers[cfg.format](folder, prefix, cfg)


def _read_text_pair(folder: Path, prefix: str, cfg: DataConfig) -> tuple[list[str], list[str], str]:
    src_path = _find_file(folder, f"{prefix}.{cfg.src_lang}")
    tgt_path = _find_file(folder, f"{prefix}.{cfg.tgt_lang}")
    bare_cr = {path: _check_utf8(path) for path in (src_path, tgt_path)}
    lines = _load_text_lines({"src": src_path, "tgt": tgt_path})
    src, tgt = lines["src"], lines["tgt"]
    if len(src) != len(tgt):
        message = (
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "line N of one must be the translation of line N of the other"
        )
        for path, count in bare_cr.items():
            if count:
                message += f" (note: {path} has {count} carriage return(s) without a newline; each ends a line)"
        raise CorpusError(message)
    return src, tgt, f"{src_path} + {tgt_path.name}"


def _read_tsv(folder: Path, prefix: str, cfg: DataConfig) -> tuple[list[str], list[str], str]:
    path = _find_file(folder, f"{prefix}.tsv")
    _check_utf8(path)
    src, tgt = [], []
    extra_columns = 0
    for lineno, row in enumerate(_load_text_lines({"rows": path})["rows"], 1):
        source, tab, rest = row.partition("\t")
        if not tab:
            if row.strip():
                raise CorpusError(f"{path}, line {lineno}: no tab; expected 'source<TAB>target', got {row[:80]!r}")
            rest = ""  # a blank line is an empty pair, dropped by cleaning
        target, tab, _ = rest.partition("\t")
        extra_columns += bool(tab)
        src.append(source)
        tgt.append(target)
    if extra_columns:
        log.info("%s: %d line(s) have more than two columns; the extra columns are ignored", path, extra_columns)
    return src, tgt, str(path)


def _read_jsonl(folder: Path, prefix: str, cfg: DataConfig) -> tuple[list[str], list[str], str]:
    path = _find_file(folder, f"{prefix}.jsonl")
    _check_utf8(path)
    with _quiet_datasets() as datasets, tempfile.TemporaryDirectory(prefix="seq2seq-datasets-") as cache:
        try:
            ds = datasets.load_dataset(
                "json", data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
        except Exception as e:
            raise CorpusError(_jsonl_parse_error(path) or f"{path}: cannot be read as JSON lines ({_reason(e)})") from e
    langs = (cfg.src_lang, cfg.tgt_lang)
    columns = _language_columns(ds, langs)
    if columns is None:
        raise CorpusError(
            f"{path}: expected a 'translation' object or top-level keys {list(langs)}; keys found: {ds.column_names}"
        )
    for lang, values in zip(langs, columns):
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            lineno, keys = _jsonl_record_keys(path, bad, nested="translation" in ds.column_names)
            raise CorpusError(f"{path}, line {lineno}: no string for {lang!r}; keys found: {keys}")
    return columns[0], columns[1], str(path)


def _find_file(folder: Path, name: str) -> Path:
    candidates = [folder / name, folder / f"{name}.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    stem = name.split(".")[0]
    nearby = sorted(p.name for p in folder.glob(f"{stem}*"))[:10]
    found = f"; files starting with {stem!r} there: {nearby}" if nearby else ""
    raise CorpusError(f"missing corpus file: tried {', '.join(str(c) for c in candidates)}{found}")


def _load_text_lines(files: dict[str, Path]) -> dict[str, list[str]]:
    """Lines of each file via the datasets "text" builder: blank lines kept, line breaks removed.

    The builder opens files with universal newlines, so "\\r\\n" and a lone "\\r" both end a line.
    """
    with _quiet_datasets() as datasets, tempfile.TemporaryDirectory(prefix="seq2seq-datasets-") as cache:
        try:
            dsd = datasets.load_dataset(
                "text",
                data_files={key: str(path) for key, path in files.items()},
                keep_linebreaks=False,
                cache_dir=cache,
                keep_in_memory=True,
            )
        except Exception as e:
            raise CorpusError(f"cannot read {', '.join(map(str, files.values()))}: {_reason(e)}") from e
        # Slicing the lazy column first is much faster than iterating over it.
        lines = {key: dsd[key]["text"][:] for key in files}
    for column in lines.values():
        if column and column[0].startswith("\ufeff"):  # a UTF-8 byte-order mark (kept by the builder)
            column[0] = column[0][1:]
    return lines


def _check_utf8(path: Path) -> int:
    """Raise CorpusError at the first line that is not UTF-8; return the number of bare carriage returns."""
    lines_before = 0
    bare_cr = 0
    try:
        with _open_binary(path) as f:
            while chunk := f.read(_CHUNK_BYTES):
                chunk += f.readline()  # end on a line boundary (no UTF-8 sequence contains a newline byte)
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError as e:
                    lineno = lines_before + chunk.count(b"\n", 0, e.start) + 1
                    column = e.start - (chunk.rfind(b"\n", 0, e.start) + 1) + 1
                    bad = chunk[e.start : e.end].hex()
                    raise CorpusError(
                        f"{path}, line {lineno}: not valid UTF-8 (byte 0x{bad} at byte {column} of the line); "
                        "corpus files must be UTF-8 (convert with e.g. iconv -f latin1 -t utf-8)"
                    ) from None
                lines_before += chunk.count(b"\n")
                bare_cr += chunk.count(b"\r") - chunk.count(b"\r\n")
    except (OSError, EOFError, zlib.error) as e:
        raise CorpusError(f"cannot read {path}: {e}") from e
    return bare_cr


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _jsonl_records(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for each non-blank line: the records the json builder reads, in order."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            if line.strip():
                yield lineno, line


def _jsonl_parse_error(path: Path) -> str | None:
    for lineno, line in _jsonl_records(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            return f"{path}, line {lineno}: invalid JSON ({e.msg} at column {e.colno})"
        if not isinstance(record, dict):
            return f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}"
    return None


def _jsonl_record_keys(path: Path, index: int, *, nested: bool) -> tuple[int, list[str]]:
    """Line number and keys (of its "translation" object if `nested`) of the index-th record."""
    for i, (lineno, line) in enumerate(_jsonl_records(path)):
        if i == index:
            record = json.loads(line)
            inner = record.get("translation") if nested else record
            return lineno, sorted(inner) if isinstance(inner, dict) else []
    return index + 1, []


# ---------------------------------------------------------------------------------------------------- hub


def _load_hub_dataset(cfg: DataConfig) -> Any:
    """The hub dataset as a DatasetDict; fails fast (CorpusError) when the hub is unreachable and not cached."""
    name = cfg.hub_name
    if not name:
        raise CorpusError("data.hub_name must name a dataset when data.source=hub")
    offline = requested = _offline_requested()
    if not offline and not _hub_reachable():
        log.warning("cannot reach the Hugging Face hub; looking for %r in the local cache", name)
        offline = True
    started = time.perf_counter()
    with _quiet_datasets() as datasets, _hub_offline(offline):
        try:
            dsd = datasets.load_dataset(name, cfg.hub_config)
        except Exception as e:
            if offline or _is_connection_error(e):
                why = "HF_HUB_OFFLINE is set" if requested else "no network?"
                raise CorpusError(
                    f"cannot reach the Hugging Face hub to load {name!r} ({why}) and it is not in the local cache; "
                    f"{LOCAL_FILES_HINT} [{_reason(e)}]"
                ) from e
            hint = " (set data.hub_config?)" if "config" in str(e).lower() and not cfg.hub_config else ""
            raise CorpusError(f"cannot load {name!r} from the Hugging Face hub{hint}: {_reason(e)}") from e
    log.info("loaded hub dataset %r in %.1fs: splits %s", name, time.perf_counter() - started, list(dsd))
    return dsd


def _read_hub_split(cfg: DataConfig, split: str, prefix: str, dsd: Any) -> tuple[list[str], list[str], str]:
    name = _hub_split_name(cfg, split, prefix, list(dsd))
    ds = dsd[name]
    langs = (cfg.src_lang, cfg.tgt_lang)
    columns = _language_columns(ds, langs)
    if columns is None:
        raise CorpusError(
            f"hub dataset {cfg.hub_name!r} split {name!r}: expected a 'translation' column or "
            f"{list(langs)} columns; columns found: {ds.column_names}"
        )
    for lang, values in zip(langs, columns):
        if values and all(v is None for v in values):
            first = ds[0].get("translation")
            found = sorted(first) if isinstance(first, dict) else ds.column_names
            raise CorpusError(
                f"hub dataset {cfg.hub_name!r} split {name!r} has no {lang!r} text; languages found: {found}"
            )
    # Unlike local JSONL (an error), a missing value on the hub is an empty side, dropped by cleaning.
    src, tgt = ([v if isinstance(v, str) else "" for v in values] for values in columns)
    origin = f"hub {cfg.hub_name}{'/' + cfg.hub_config if cfg.hub_config else ''} split {name!r}"
    return src, tgt, origin


def _hub_split_name(cfg: DataConfig, split: str, prefix: str, available: list[str]) -> str:
    """The configured prefix if the hub dataset has such a split, else the usual names for `split`."""
    candidates = (prefix, *HUB_SPLIT_NAMES[split])
    for candidate in candidates:
        if candidate in available:
            return candidate
    raise CorpusError(
        f"hub dataset {cfg.hub_name!r} has no {split} split: tried {list(dict.fromkeys(candidates))}, "
        f"available: {available}"
    )


def _language_columns(ds: Any, langs: tuple[str, str]) -> tuple[list[Any], list[Any]] | None:
    """The two language columns, from a `translation` column or from top-level columns; None if neither.

    Values are whatever the data holds: None where a record lacks the language.
    """
    if "translation" in ds.column_names:
        flat = ds.select_columns(["translation"]).flatten()
        keys = [f"translation.{lang}" for lang in langs]
        if all(key in flat.column_names for key in keys):
            return flat[keys[0]][:], flat[keys[1]][:]
        records = ds["translation"][:]  # missing or mixed-type keys: datasets gives plain dicts
        src, tgt = ([r.get(lang) if isinstance(r, dict) else None for r in records] for lang in langs)
        return src, tgt
    if all(lang in ds.column_names for lang in langs):
        return ds[langs[0]][:], ds[langs[1]][:]
    return None


def _is_connection_error(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _offline_requested() -> bool:
    return any((os.environ.get(var) or "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers an HTTPS request (any HTTP status counts) within about `timeout` seconds.

    A real request rather than a bare TCP connect: behind an intercepting proxy a TCP connection to any
    address succeeds while every hub request then fails (and is retried for ~25 s by huggingface_hub).
    It runs in a daemon thread so that a hanging DNS lookup cannot stretch the wait either.
    """
    from huggingface_hub import constants

    result: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
            result.append(True)
        except urllib.error.HTTPError:
            result.append(True)  # the server answered
        except (OSError, ValueError):  # URLError, timeouts, TLS errors; ValueError: a malformed HF_ENDPOINT
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Put datasets and huggingface_hub in offline mode for the duration of the block.

    Both libraries read HF_HUB_OFFLINE once, at import time, so setting the environment variable
    is not enough at run time: their module constants are patched too (and restored afterwards).
    """
    if not enabled:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = os.environ.get("HF_HUB_OFFLINE"), datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        env, datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved
        if env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[Any]:
    """Import `datasets` (lazily: it takes about a second) with progress bars and warnings silenced."""
    import datasets

    bars_were_disabled = datasets.are_progress_bars_disabled()
    verbosity = datasets.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    try:
        yield datasets
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
        if not bars_were_disabled:
            datasets.enable_progress_bars()


def _reason(error: BaseException) -> str:
    """The error and its root cause: datasets wraps builder errors in a generic DatasetGenerationError."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = f"{type(error).__name__}: {error}"
    return text if root is error else f"{text} <- {type(root).__name__}: {root}"


__all__ = [
    "CorpusError",
    "ParallelCorpus",
    "clean_pairs",
    "length_filter",
    "load_corpus",
    "load_split",
    "resolve_data_dir",
]
