"""What goes wrong, said to the user: a sentence and an exit code."""
from __future__ import annotations


class ClientError(Exception):
    """A clear sentence for the user; exit code 1."""


class UsageError(ClientError):
    """The command line asks for something impossible; exit code 2."""
