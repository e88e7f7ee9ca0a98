"""Reading a parallel corpus from the Hugging Face hub, with `datasets`: the dataset is loaded once (offline
when the hub cannot be reached, from the local cache) and each split is sliced chunk by chunk from
`datasets`' own Arrow cache.

The `datasets` helpers here (`quiet_datasets`, `reason`, `language_columns`) also serve the local JSONL
reader (`seq2seq.data.local_files`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from seq2seq.data.errors import CorpusError

if TYPE_CHECKING:
    from seq2seq.config import DataConfig

log = logging.getLogger(__name__)

HUB_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "val", "valid", "dev"), "test": ("test",)}
LOCAL_FILES_HINT = (
    "point at local files instead: data=multi30k data.dir=PATH, "
    "or data.source=local data.dir=PATH data.format=text|tsv|jsonl"
)
_TRUE = {"1", "ON", "YES", "TRUE"}


def load_hub_dataset(cfg: DataConfig) -> Any:
    """The hub dataset as a DatasetDict; fails fast (CorpusError) when the hub is unreachable and not cached."""
    name = cfg.hub_name
    if not name:
        raise CorpusError("data.hub_name must name a dataset when data.source=hub")
    offline = requested = _offline_requested()
    if not offline and not _hub_reachable():
        log.warning("cannot reach the Hugging Face hub; looking for %r in the local cache", name)
        offline = True
    started = time.perf_counter()
    with quiet_datasets() as datasets, _hub_offline(offline):
        try:
            dsd = datasets.load_dataset(name, cfg.hub_config)
        except Exception as e:
            if offline or _is_connection_error(e):
                why = "HF_HUB_OFFLINE is set" if requested else "no network?"
                raise CorpusError(
                    f"cannot reach the Hugging Face hub to load {name!r} ({why}) and it is not in the local cache; "
                    f"{LOCAL_FILES_HINT} [{reason(e)}]"
                ) from e
            hint = " (set data.hub_config?)" if "config" in str(e).lower() and not cfg.hub_config else ""
            raise CorpusError(f"cannot load {name!r} from the Hugging Face hub{hint}: {reason(e)}") from e
    log.info("loaded hub dataset %r in %.1fs: splits %s", name, time.perf_counter() - started, list(dsd))
    return dsd


class HubSplit:
    """A split of a hub dataset, sliced chunk by chunk from `datasets`' Arrow cache."""

    def __init__(self, cfg: DataConfig, split: str, prefix: str, dsd: Any) -> None:
        self.name = _hub_split_name(cfg, split, prefix, list(dsd))
        self.ds, self.cfg = dsd[self.name], cfg
        self.langs = (cfg.src_lang, cfg.tgt_lang)
        if language_columns(self.ds.select(range(0)), self.langs) is None:
            raise CorpusError(
                f"hub dataset {cfg.hub_name!r} split {self.name!r}: expected a 'translation' column or "
                f"{list(self.langs)} columns; columns found: {self.ds.column_names}"
            )
        self.raw_pairs = len(self.ds)
        self.origin = f"hub {cfg.hub_name}{'/' + cfg.hub_config if cfg.hub_config else ''} split {self.name!r}"

    def raw_chunks(self, size: int) -> Iterator[tuple[int, tuple[list[str], list[str]]]]:
        for start in range(0, self.raw_pairs, size):
            columns = language_columns(self.ds.select(range(start, min(start + size, self.raw_pairs))), self.langs)
            assert columns is not None
            if start == 0:
                self._check_languages(columns)
            # Unlike local JSONL (an error), a missing value on the hub is an empty side, dropped by cleaning.
            src, tgt = ([v if isinstance(v, str) else "" for v in values] for values in columns)
            yield start, (src, tgt)

    def _check_languages(self, columns: tuple[list[Any], list[Any]]) -> None:
        """A language with no text at all in the first chunk is a wrong language code, not missing values."""
        for lang, values in zip(self.langs, columns):
            if values and all(v is None for v in values):
                first = self.ds[0].get("translation")
                found = sorted(first) if isinstance(first, dict) else self.ds.column_names
                raise CorpusError(
                    f"hub dataset {self.cfg.hub_name!r} split {self.name!r} has no {lang!r} text; "
                    f"languages found: {found}"
                )

    def fingerprint(self, settings: dict[str, Any]) -> str:
        """`datasets`' own fingerprint of the split's Arrow data, with the reading `settings`."""
        settings = {**settings, "hub": self.cfg.hub_name, "config": self.cfg.hub_config, "split": self.name}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        digest.update(str(self.ds._fingerprint).encode())
        return digest.hexdigest()[:20]


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


def language_columns(ds: Any, langs: tuple[str, str]) -> tuple[list[Any], list[Any]] | None:
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
def quiet_datasets() -> Iterator[Any]:
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


def reason(error: BaseException) -> str:
    """The error and its root cause: datasets wraps builder errors in a generic DatasetGenerationError."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = f"{type(error).__name__}: {error}"
    return text if root is error else f"{text} <- {type(root).__name__}: {root}"
