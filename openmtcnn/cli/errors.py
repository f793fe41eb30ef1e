"""The CLI's one usage-error class, in its own module so every command raises the class main() catches."""


class UsageError(Exception):
    """A problem with what the user asked for: printed as a message, exit code 2."""


def report_unreadable(failed: list[dict], key: str, total: int) -> int:
    """Print each input that could not be read (to stderr); the exit code: 1 if any, else 0."""
    import sys

    for f in failed:
        print(f"error: {f[key]}: {f['error']}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {total} images could not be read (skipped)", file=sys.stderr)
    return 1 if failed else 0
