"""Small file helpers: atomic writes (caches, checkpoints), reading sentence files and writing standard output
(the commands)."""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed,
    and only then renamed over `path` (a rename within one file system is atomic). The file gets the
    mode any new file of the user gets (0644 under the usual umask 022), so a shared checkpoint, cache
    or results.json is readable by others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from other users
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


@contextlib.contextmanager
def stdout_may_close() -> Iterator[None]:
    """Run the block that writes a command's output to standard output, which the reader may close early
    (`translate ... | head -1`): then the command stops writing quietly instead of dying with a BrokenPipeError.

    The block's output is flushed before it ends, so a pipe closed while the last buffered bytes are written is
    caught here too. On a closed pipe the rest of the block is skipped and standard output's file descriptor is
    pointed at the null device (`os.dup2`), so that the interpreter's final flush of what is left in the buffer
    does not fail again at exit; the command then goes on after the block and ends with its usual status.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point standard output's file descriptor at the null device (when it has one): what is still buffered or
    written later goes nowhere, without an error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (io.UnsupportedOperation) or closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
