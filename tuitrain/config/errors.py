"""Provides ConfigError: one user mistake in a config, with the file, field path, line and fix."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConfigIssue:
    """One problem: where (file, dotted path, line) and what to do about it."""

    path: str
    message: str
    fix: str = ""
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.path or '<root>'}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


@dataclass
class ConfigError(Exception):
    """A config that cannot be used; carries every issue found, not just the first."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.issues)
        head = f"invalid config ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head, *(f"  - {i}" for i in self.issues)])

    def by_path(self) -> dict[str, ConfigIssue]:
        """Issues keyed by dotted field path (the editor marks fields with these)."""
        return {i.path: i for i in self.issues}
