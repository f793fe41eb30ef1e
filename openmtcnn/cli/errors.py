"""The CLI's usage errors (one class main() catches) and the argument checks every command shares."""


class UsageError(Exception):
    """A problem with what the user asked for: printed as a message, exit code 2."""


def report_unreadable(failed: list[dict], key: str, total: int) -> int:
    """Print each input that could not be read (to stderr); the exit code: 1 if any, else 0."""
    import sys

    for f in failed:
        print(f"error: {f[key]}: {f['error']}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {total} images could not be read (their faces count as missed)", file=sys.stderr)
    return 1 if failed else 0


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); anything else, or smaller than P-Net's 12x12 window, is a usage error."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"size must be WIDTHxHEIGHT (e.g. 640x480), got {text!r}") from None
    if w < 12 or h < 12:
        raise UsageError(f"size must be at least 12x12, got {text}")
    return w, h


def exit_code(failures: int, total: int) -> int:
    """Say how many inputs failed (to stderr); the exit code of a run over many inputs: 1 if any did."""
    import sys

    if failures:
        print(f"{failures} of {total} inputs failed", file=sys.stderr)
    return 1 if failures else 0
