"""One small registry class for every kind of pluggable thing (datasets, models, scores, methods).

The CLI word, the YAML file name and the registry key are the same string, so an unknown name can
always be answered with the list of valid ones.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def closest(word: str, candidates, n: int = 2) -> list[str]:
    """The valid names closest to a mistyped one (difflib's ratio, at least 0.7), best first."""
    return difflib.get_close_matches(str(word), [str(c) for c in candidates], n=n, cutoff=0.7)


def did_you_mean(word: str, candidates, prefix: str = "") -> str:
    """"did you mean a or b? " for the closest candidates, or "" if none is close."""
    close = closest(word, candidates)
    return f"did you mean {' or '.join(prefix + c for c in close)}? " if close else ""


class UnknownName(KeyError):
    """Raised for a name that is not registered; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} '{name}'; {did_you_mean(name, self._entries)}"
                              f"choose one of: {', '.join(sorted(self._entries))}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
