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


class _NoBar:
    """What ``counter`` gives when there is no bar to show: updates that do nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def counter(total: int, desc: str = "", initial: int = 0, enable: bool = True, unit: str = "it"):
    """A bar advanced by hand (``update(n)``, ``close()``): rate and ETA of work that arrives in uneven parts.

    ``initial``: what was done before (a resumed job), counted in the bar but not in the rate.
    """
    if not enable:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None, smoothing=0.1)
