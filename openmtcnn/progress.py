"""Progress bars: tqdm when installed, otherwise a plain pass-through (detection needs no tqdm)."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str = "", total: int | None = None, enable: bool = True,
             unit: str = "it") -> Iterator[T]:
    """Wrap a long loop in a progress bar on stderr (when tqdm is installed and stderr is a terminal); rate in unit/s."""
    if not enable:
        return iter(items)
    try:
        from tqdm import tqdm
    except ImportError:
        return iter(items)
    return iter(tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                     disable=None))  # None: off when stderr is not a terminal (logs, CI)
