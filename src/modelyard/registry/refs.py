"""Names and references: ``churn``, ``churn@champion``, ``churn:3``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidInput

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_TAG_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,128}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"model name {name!r} is not allowed: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.fullmatch(alias):
        raise InvalidInput(
            f"alias {alias!r} is not allowed: start with a letter, then letters, digits, "
            "'_' or '-' (at most 64 characters); a number would read as a version"
        )
    return alias


def check_tag_key(key: str) -> str:
    if not _TAG_KEY.fullmatch(key):
        raise InvalidInput(
            f"tag key {key!r} is not allowed: use letters, digits, '_', '.', '-' or '/'"
        )
    return key


@dataclass(frozen=True)
class ModelRef:
    """A model name, optionally pinned to a version or an alias.

    >>> ModelRef.parse("churn@champion")
    ModelRef(name='churn', version=None, alias='champion')
    >>> ModelRef.parse("churn:3").version
    3
    """

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if "@" in text:
            name, _, alias = text.partition("@")
            return cls(check_name(name), alias=check_alias(alias))
        if ":" in text:
            name, _, number = text.partition(":")
            if not number.isdigit() or int(number) < 1:
                raise InvalidInput(
                    f"version {number!r} in {text!r} is not a positive whole number"
                )
            return cls(check_name(name), version=int(number))
        return cls(check_name(text))

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version:
            return f"{self.name}:{self.version}"
        return self.name
