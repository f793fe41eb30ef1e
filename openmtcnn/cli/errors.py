"""The CLI's one usage-error class, in its own module so every command raises the class main() catches."""


class UsageError(Exception):
    """A problem with what the user asked for: printed as a message, exit code 2."""
