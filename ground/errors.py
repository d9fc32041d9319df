"""Errors shared by every room, so none has to import the composition (netqos/) to raise them."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad configuration: carries the file, the key and the reason, ready to print."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")
