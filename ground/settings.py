"""The base of every room's settings section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One section of the configuration file; each room defines its own next to its code."""

    # A typo in a key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid")
