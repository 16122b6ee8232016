"""The one place REST turns domain errors into HTTP statuses (looked up along the MRO)."""

from __future__ import annotations

import logging

from modelyard import errors

logger = logging.getLogger("modelyard.serving.rest")

STATUS: dict[type[BaseException], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.InvalidInput: 400,
    errors.Overloaded: 503,
    errors.Unavailable: 503,
    errors.DeadlineExceeded: 504,
    errors.ModelyardError: 500,
}


def status_of(exc: BaseException) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """HTTP status, message and extra headers for an exception raised below the adapter."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            headers = []
            if isinstance(exc, errors.Overloaded):
                headers.append((b"retry-after", str(max(1, round(exc.retry_after_s))).encode()))
            return status, str(exc), headers
    logger.exception("unexpected error while answering a request", exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); the server log has the details", []
