"""Routing during a rollout: sticky, monotone as the weight grows, and on target share."""

from __future__ import annotations

import doctest
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from modelyard.errors import InvalidInput
from modelyard.rollout import policy
from modelyard.rollout.policy import Split, bucket, choose, parse_duration, steps

KEYS = [f"user-{i}" for i in range(20_000)]


def on_candidate(weight: float, keys: list[str] = KEYS, salt: str = "rollout-1") -> set[str]:
    split = Split(baseline=1, candidate=2, weight=weight)
    return {key for key in keys if choose(split, key, salt) == 2}


def test_docstring_examples() -> None:
    result = doctest.testmod(policy, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_the_same_key_always_gets_the_same_version() -> None:
    split = Split(baseline=1, candidate=2, weight=30)
    rng = np.random.default_rng(0)
    first = [choose(split, key, "rollout-1", draw=rng.random()) for key in KEYS[:2000]]
    again = [choose(Split(1, 2, 30), key, "rollout-1", draw=rng.random()) for key in KEYS[:2000]]
    assert first == again
    assert set(first) == {1, 2}


def test_every_process_hashes_a_key_alike() -> None:
    # Replicas must agree: Python's hash() would differ with PYTHONHASHSEED, blake2b does not.
    code = "from modelyard.rollout.policy import bucket; print(bucket('user-42', 'rollout-7'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert int(out.stdout) == bucket("user-42", "rollout-7")


def test_another_rollout_reshuffles_callers() -> None:
    first, second = on_candidate(50, KEYS[:4000], "rollout-1"), on_candidate(50, KEYS[:4000], "r2")
    moved = len(first ^ second) / 4000
    assert 0.4 < moved < 0.6  # independent halves: half of the callers change side


def test_salt_and_key_are_not_simply_concatenated() -> None:
    assert [bucket("c", "ab"), bucket("x1", "a")] != [bucket("bc", "a"), bucket("1", "ax")]


def test_raising_the_weight_only_moves_callers_to_the_candidate() -> None:
    weights = [0, 0.01, 1, 5, 12.5, 25, 50, 75, 99.99, 100]
    groups = [on_candidate(weight) for weight in weights]
    for smaller, larger in itertools.pairwise(groups):
        assert smaller <= larger
    assert groups[0] == set()
    assert groups[-1] == set(KEYS)


@pytest.mark.parametrize("weight", [1, 5, 12.5, 50, 90])
def test_the_candidates_share_of_callers_is_the_weight(weight: float) -> None:
    share = weight / 100
    low, high = stats.binom.interval(0.999, len(KEYS), share)
    assert low <= len(on_candidate(weight)) <= high


@pytest.mark.parametrize("weight", [5, 37.5])
def test_without_a_key_the_draw_decides_at_the_weight(weight: float) -> None:
    split = Split(1, 2, weight)
    draws = np.random.default_rng(3).random(20_000)
    chosen = [choose(split, None, "rollout-1", draw=float(draw)) for draw in draws]
    low, high = stats.binom.interval(0.999, draws.size, weight / 100)
    assert low <= chosen.count(2) <= high
    assert choose(split, None, "r", draw=weight / 100 - 1e-9) == 2
    assert choose(split, None, "r", draw=weight / 100) == 1


def test_weight_zero_never_and_weight_hundred_always_reach_the_candidate() -> None:
    draws = [0.0, 0.5, 0.999999]
    assert {choose(Split(1, 2, 0), key, "r") for key in KEYS[:2000]} == {1}
    assert {choose(Split(1, 2, 100), key, "r") for key in KEYS[:2000]} == {2}
    assert {choose(Split(1, 2, 0), None, "r", draw=draw) for draw in draws} == {1}
    assert {choose(Split(1, 2, 100), None, "r", draw=draw) for draw in draws} == {2}


def test_numpy_numbers_are_accepted() -> None:
    split = Split(np.int64(1), np.int64(2), np.float64(100))  # type: ignore[arg-type]
    assert choose(split, None, "r", draw=np.float64(0.5)) == 2


def test_a_split_that_is_not_sticky_ignores_the_key() -> None:
    split = Split(1, 2, 50, sticky=False)
    assert choose(split, "user-1", "r", draw=0.1) == 2
    assert choose(split, "user-1", "r", draw=0.9) == 1
    with pytest.raises(InvalidInput, match="the split is not sticky: choose needs a draw"):
        choose(split, "user-1", "r")


@pytest.mark.parametrize(("args", "message"), [
    ((0, 2, 10), "the baseline must be a version number of 1 or more, not 0"),
    ((1, "2", 10), "the candidate must be a version number of 1 or more, not '2'"),
    ((True, 2, 10), "the baseline must be a version number"),
    ((2, 2, 10), r"the candidate must differ from the baseline \(both are version 2\)"),
    ((1, 2, 101), "the candidate's weight must be a percentage from 0 to 100, not 101"),
    ((1, 2, -1), "percentage from 0 to 100, not -1"),
    ((1, 2, float("nan")), "percentage from 0 to 100, not nan"),
    ((1, 2, "10"), "percentage from 0 to 100, not '10'"),
])
def test_bad_splits_are_refused(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Split(*args)  # type: ignore[arg-type]


def test_bad_choices_are_refused() -> None:
    split = Split(1, 2, 10)
    with pytest.raises(InvalidInput, match="the request has no key: choose needs a draw"):
        choose(split, None, "r")
    for draw in (1.0, -0.1, float("nan")):
        with pytest.raises(InvalidInput, match="draw must be a number in"):
            choose(split, None, "r", draw=draw)
    with pytest.raises(InvalidInput, match="the routing key must be text, not 42"):
        choose(split, 42, "r")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="the salt must be text"):
        choose(split, "user-1", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("plan", "expected"), [
    ("5,25,50,100", (5.0, 25.0, 50.0, 100.0)),
    (" 1% , 10%, 100 ", (1.0, 10.0, 100.0)),
    ([2.5, 100], (2.5, 100.0)),
    ((100,), (100.0,)),
])
def test_step_plans_parse(plan: str | list[float], expected: tuple[float, ...]) -> None:
    assert steps(plan) == expected


@pytest.mark.parametrize(("plan", "message"), [
    ("5,50,25,100", "steps must increase: 25 after 50"),
    ("5,25,25,100", "steps must increase: 25 after 25"),
    ("5,25,50", "the last step must be 100, not 50"),
    ("0,50,100", "step 1 must be more than 0 and at most 100, not '0'"),
    ([5, 150], "step 2 must be more than 0 and at most 100, not 150"),
    ("5,half,100", "step 2 must be a percentage, not 'half'"),
    ("5,,100", "step 2 must be a percentage, not ''"),
    ("", "steps are empty"),
    ([], "steps are empty"),
    ([5, None, 100], "step 2 must be a percentage, not None"),
    (7, "steps must be text like '5,25,50,100' or a list, not 7"),
])
def test_bad_step_plans_say_what_is_wrong(plan: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        steps(plan)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5m", 90),
    (" 10M ", 600), (30, 30), (0.5, 0.5),
])
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("10", "duration '10' needs a unit: s, m, h or d"),
    ("10 minutes", "duration '10 minutes' is not a duration such as 90s, 10m, 2h or 1d"),
    ("1w", "is not a duration such as"),
    ("", "is not a duration such as"),
    ("0s", "duration '0s' must be more than zero"),
    (-5, "duration -5 must be more than zero"),
    (None, "a duration must be text such as '10m' or seconds, not None"),
    (True, "a duration must be text"),
])
def test_bad_durations_say_what_is_wrong(text: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_duration(text)  # type: ignore[arg-type]
