"""Progress bars for the long preprocessing steps (reading, sampling, encoding a large corpus).

They draw on standard error, only when it is a terminal (`tqdm(disable=None)`), so logs and test
output stay clean; a step that shows no bar still logs its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable[Any] | None, desc: str | None, total: int | None = None, unit: str = "it") -> Any:
    """A tqdm bar over `iterable` (or a manual one, `.update(n)`), or a silent stand-in when `desc` is None."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        unit_scale=True,
        disable=None if desc else True,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )
