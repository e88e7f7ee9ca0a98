"""Small file helpers shared by the caches (tokenizer, encoded corpus) and checkpoints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed,
    and only then renamed over `path` (a rename within one file system is atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def update_with_corpus(digest: Any, source_key: str | None, sides: Sequence[Sequence[str]]) -> None:
    """Feed a corpus into a cache key (a hashlib object): its fingerprint when known, else every line of each side."""
    if source_key is not None:
        digest.update(b"\x00source\x00" + source_key.encode())
        return
    for lines in sides:
        digest.update(b"\x00side\x00")
        for line in lines:
            digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
