"""Small file helpers: atomic writes (caches, checkpoints) and reading sentence files (the commands)."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path


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


def strip_line_end(raw: bytes) -> bytes:
    """A raw line without its ending: only a newline byte ends a line; a carriage return just before it goes too."""
    return raw.removesuffix(b"\n").removesuffix(b"\r")


def read_lines(path: str) -> list[str]:
    """One sentence per line (UTF-8; `.gz` allowed), split the way `seq2seq.translate` splits its input.

    Only "\n" ends a line (a trailing "\r" is dropped, a lone one stays inside its line), so
    `evaluate --src F` translates exactly the lines `translate < F` would. Bytes that are not UTF-8 are
    an error naming the file and line: a reference cannot be scored with replaced characters.
    """
    opener = gzip.open if path.endswith(".gz") else open
    lines = []
    with opener(path, "rb") as f:  # type: ignore[operator]
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(strip_line_end(raw).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not UTF-8 ({exc.reason})") from None
    return lines


def read_argument(option: str, path: str) -> list[str]:
    """`read_lines(path)` for the command-line option `option`; a file that cannot be read is a one-line ValueError."""
    where = Path(path)
    if where.is_dir():
        raise ValueError(f"{option} {path}: is a folder, not a file")
    if not where.exists():
        raise ValueError(f"{option} {path}: no such file")
    try:
        return read_lines(path)
    except OSError as exc:  # no permission, or a .gz file that is not gzip
        raise ValueError(f"{option} {path}: cannot read ({exc.strerror or exc})") from None
    except EOFError:  # a truncated .gz file
        raise ValueError(f"{option} {path}: cannot read (the compressed file is truncated)") from None
