"""The one place gRPC turns domain errors into status codes (looked up along the MRO).

``PayloadTooLarge`` (a tensor declaring more elements than ``max_tensor_elements``) maps to
INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: the caller's request is wrong and retrying it will
not help, while gRPC clients and proxies read RESOURCE_EXHAUSTED as "the server is out of a
resource, back off and retry". A *message* over ``max_message_bytes`` never reaches this
table: gRPC itself rejects it with RESOURCE_EXHAUSTED before the servicer runs.
"""

from __future__ import annotations

import logging

import grpc

from modelyard import errors

logger = logging.getLogger("modelyard.serving.grpc")

CODES: dict[type[BaseException], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PayloadTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ModelyardError: grpc.StatusCode.INTERNAL,
}

Metadata = tuple[tuple[str, str], ...]


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, Metadata]:
    """Status code, message and trailing metadata for an exception raised below the adapter."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            trailers: Metadata = ()
            if isinstance(exc, errors.Overloaded):
                # gRPC's standard retry hint, honoured by clients with a retry policy.
                pushback = max(1, round(exc.retry_after_s * 1000))
                trailers = (("grpc-retry-pushback-ms", str(pushback)),)
            return code, str(exc), trailers
    logger.exception("unexpected error while answering a gRPC call", exc_info=exc)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}); the server log has the details",
        (),
    )
