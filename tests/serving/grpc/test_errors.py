"""The error table: each domain error, looked up along its MRO, and the unexpected ones."""

from __future__ import annotations

import logging

import grpc
import pytest

from modelyard import errors
from modelyard.serving.grpc.errors import status_of


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ModelNotFound("m"), grpc.StatusCode.NOT_FOUND),
        (errors.AliasNotFound("m"), grpc.StatusCode.NOT_FOUND),
        (errors.SignatureMismatch("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.PayloadTooLarge("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.ModelNotReady("m"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("m"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.CorruptArtifact("m"), grpc.StatusCode.INTERNAL),
        (errors.Conflict("m"), grpc.StatusCode.FAILED_PRECONDITION),  # e.g. a rollout already runs
    ],
)
def test_domain_errors_keep_their_message(error: Exception, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, "m", ())


def test_overloaded_carries_a_retry_hint() -> None:
    code, _, trailers = status_of(errors.Overloaded("queue full", retry_after_s=0.25))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert trailers == (("grpc-retry-pushback-ms", "250"),)


def test_unexpected_errors_are_logged_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelyard.serving.grpc"):
        code, message, _ = status_of(KeyError("secret internals"))
    assert code == grpc.StatusCode.INTERNAL
    assert message == "internal error (KeyError); the server log has the details"
    assert "secret internals" in caplog.text
