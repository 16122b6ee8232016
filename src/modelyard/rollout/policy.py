"""Which version answers a request during a rollout, and the plans that move the weight.

A :class:`Split` sends ``weight`` percent of the traffic to the candidate and the rest to the
baseline. :func:`choose` makes the choice for one request:

- **With a key** (the value of a configured header, such as a user id) the choice is a stable
  hash: ``blake2b(salt, key)`` mapped to a bucket in [0, 10000), candidate when
  ``bucket < weight * 100``. The salt is the rollout's id, so a caller keeps its version for the
  whole rollout and a new rollout reshuffles callers. Raising the weight only adds buckets to the
  candidate's side: callers move from baseline to candidate, never back (monotone), so a user is
  not bounced between versions as a canary grows. Python's ``hash()`` is not used: it is salted
  per process, and every server replica must agree.
- **Without a key** each request is drawn on its own from ``draw``, a uniform number in [0, 1)
  the caller supplies (the server passes ``random.random()``), which keeps :func:`choose` pure.

A keyed choice resolves the weight to 0.01 %. :func:`steps` parses a canary's step plan
(``"5,25,50,100"``) and :func:`parse_duration` a step's duration (``"10m"``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from modelyard.errors import InvalidInput

BUCKETS: Final = 10_000
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Split:
    """``weight`` percent (0 to 100) of requests go to ``candidate``, the rest to ``baseline``.

    ``sticky``: a request that carries a key always gets the same version (:func:`choose`);
    when False every request is drawn on its own, key or not.

    >>> Split(baseline=3, candidate=4, weight=12.5)
    Split(baseline=3, candidate=4, weight=12.5, sticky=True)
    >>> Split(3, 3, 10)
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: the candidate must differ from the baseline (both are version 3)
    """

    baseline: int
    candidate: int
    weight: float
    sticky: bool = True

    def __post_init__(self) -> None:
        for role, version in (("baseline", self.baseline), ("candidate", self.candidate)):
            if (isinstance(version, bool) or not isinstance(version, numbers.Integral)
                    or version < 1):
                raise InvalidInput(f"the {role} must be a version number of 1 or more, "
                                   f"not {version!r}")
        if self.baseline == self.candidate:
            raise InvalidInput(f"the candidate must differ from the baseline (both are version "
                               f"{self.baseline})")
        if not _is_number(self.weight) or not 0 <= self.weight <= 100:
            raise InvalidInput(f"the candidate's weight must be a percentage from 0 to 100, "
                               f"not {self.weight!r}")
        if not isinstance(self.sticky, bool):
            raise InvalidInput(f"sticky must be true or false, not {self.sticky!r}")


def bucket(key: str, salt: str) -> int:
    """The key's bucket in [0, 10000) for this salt: the same on every process and machine.

    The salt is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` hash differently.

    >>> bucket("user-42", "rollout-7") == bucket("user-42", "rollout-7")
    True
    >>> 0 <= bucket("user-42", "rollout-7") < 10_000
    True
    """
    digest = hashlib.blake2b(f"{len(salt)}:{salt}{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose(split: Split, key: str | None, salt: str, draw: float | None = None) -> int:
    """The version that answers a request.

    Parameters
    ----------
    split
        The rollout's current split.
    key
        The request's routing key (e.g. a user-id header), or None. With a key and a sticky
        split, the choice depends only on ``(salt, key, weight)`` and ``draw`` is ignored.
    salt
        The rollout's id: the same key can land on different sides in different rollouts.
    draw
        A uniform number in [0, 1) used when there is no key or the split is not sticky; the
        server passes ``random.random()``.

    Returns
    -------
    int
        ``split.candidate`` or ``split.baseline``.

    Examples
    --------
    >>> split = Split(baseline=1, candidate=2, weight=50)
    >>> choose(split, "user-42", "r1") == choose(split, "user-42", "r1")
    True
    >>> choose(split, None, "r1", draw=0.2), choose(split, None, "r1", draw=0.7)
    (2, 1)
    >>> choose(Split(1, 2, 0), "user-42", "r1"), choose(Split(1, 2, 100), "user-42", "r1")
    (1, 2)
    """
    if not isinstance(salt, str):
        raise InvalidInput(f"the salt must be text (the rollout's id), not {salt!r}")
    if key is not None and split.sticky:
        if not isinstance(key, str):
            raise InvalidInput(f"the routing key must be text, not {key!r}")
        to_candidate = bucket(key, salt) < split.weight * (BUCKETS / 100)
    else:
        if draw is None:
            reason = "the request has no key" if key is None else "the split is not sticky"
            raise InvalidInput(f"{reason}: choose needs a draw, a random number in [0, 1)")
        if not _is_number(draw) or not 0 <= draw < 1:
            raise InvalidInput(f"draw must be a number in [0, 1), not {draw!r}")
        to_candidate = draw * 100 < split.weight
    return split.candidate if to_candidate else split.baseline


def _step(value: object, where: str) -> float:
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            number = float(text)
        except ValueError:
            raise InvalidInput(f"{where} must be a percentage, not {value!r}") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise InvalidInput(f"{where} must be a percentage, not {value!r}")
    if not math.isfinite(number) or not 0 < number <= 100:
        raise InvalidInput(f"{where} must be more than 0 and at most 100, not {value!r}")
    return number


def steps(plan: str | Sequence[float | int | str]) -> tuple[float, ...]:
    """A canary's step plan: the candidate's weights in percent, increasing, ending at 100.

    Accepts text (``"5,25,50,100"``, spaces and ``%`` allowed) or a list of numbers.

    >>> steps("5, 25, 50, 100")
    (5.0, 25.0, 50.0, 100.0)
    >>> steps([10, 100])
    (10.0, 100.0)
    >>> steps("5,50,25,100")
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: steps must increase: 25 after 50
    """
    if isinstance(plan, str):
        items: list[object] = list(plan.split(",")) if plan.strip() else []
    elif isinstance(plan, Sequence):
        items = list(plan)
    else:
        raise InvalidInput(f"steps must be text like '5,25,50,100' or a list, not {plan!r}")
    if not items:
        raise InvalidInput("steps are empty; give the candidate's weights, e.g. '5,25,50,100'")
    weights = tuple(_step(item, f"step {i + 1}") for i, item in enumerate(items))
    for before, after in itertools.pairwise(weights):
        if after <= before:
            raise InvalidInput(f"steps must increase: {after:g} after {before:g}")
    if weights[-1] != 100:
        raise InvalidInput(f"the last step must be 100, not {weights[-1]:g}")
    return weights


def parse_duration(value: str | float) -> float:
    """Seconds in a duration such as ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    A number is taken as seconds; text needs a unit. Durations must be more than zero.

    >>> parse_duration("10m"), parse_duration("90s"), parse_duration("1h30m"), parse_duration(45)
    (600.0, 90.0, 5400.0, 45.0)
    >>> parse_duration("10")
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: duration '10' needs a unit: s, m, h or d (e.g. '10m')
    """
    if _is_number(value):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION.findall(text)
        if not parts or "".join(amount + unit for amount, unit in parts) != text:
            if re.fullmatch(r"\d+(?:\.\d+)?", text):
                raise InvalidInput(f"duration {value!r} needs a unit: s, m, h or d (e.g. '10m')")
            raise InvalidInput(f"duration {value!r} is not a duration such as 90s, 10m, 2h or 1d")
        seconds = sum(float(amount) * _UNIT_S[unit] for amount, unit in parts)
    else:
        raise InvalidInput(f"a duration must be text such as '10m' or seconds, not {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"duration {value!r} must be more than zero")
    return seconds
