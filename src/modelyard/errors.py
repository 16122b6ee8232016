"""Every error modelyard raises on purpose, defined once.

Adapters (CLI, REST, gRPC) translate these to exit codes and status codes at their edge; nothing
here knows about transports. The tree::

    ModelyardError
    ├── ConfigError                 settings or a config file are wrong
    ├── StorageError                the database or the artifact store failed
    │   ├── DatabaseUnavailable     cannot connect, or the URL is malformed
    │   └── SchemaMismatch          the database was migrated by a newer modelyard
    ├── NotFound                    something named does not exist
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   ├── AliasNotFound
    │   └── TagNotFound
    ├── Conflict                    the request contradicts the current state
    ├── InvalidInput                the caller's data or arguments are wrong
    │   ├── SignatureMismatch       data does not fit a model's signature
    │   ├── ReferenceMismatch       reference data does not fit the model
    │   ├── PayloadTooLarge         a request body or tensor over the configured limit
    │   └── ModelFailed             the model raised on input that fit its signature
    ├── Unavailable                 the server cannot take this request now
    │   ├── ModelNotReady           the model is loading, unloaded or failed to load
    │   └── Overloaded              the model's queue is full; retry after a moment
    ├── DeadlineExceeded            the request's deadline passed before it was answered
    ├── ArtifactError               a model file cannot be used
    │   ├── UnknownFormat
    │   ├── UnsafeFormat            pickle without consent, untrusted skops types
    │   ├── CorruptArtifact         the file is damaged or does not match its hash
    │   └── MissingExtra            an optional dependency is not installed
    └── AuditError                  the audit chain is broken
"""

from __future__ import annotations


def first_line(text: str) -> str:
    """The first line of a (library's) message, so that errors shown to users stay one line."""
    lines = text.strip().splitlines()
    return lines[0] if lines else text


class ModelyardError(Exception):
    """Base of every error modelyard raises deliberately; its message is shown to users as is."""


class ConfigError(ModelyardError):
    pass


class StorageError(ModelyardError):
    pass


class DatabaseUnavailable(StorageError):
    pass


class SchemaMismatch(StorageError):
    pass


class NotFound(ModelyardError):
    pass


class ModelNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class AliasNotFound(NotFound):
    pass


class TagNotFound(NotFound):
    pass


class Conflict(ModelyardError):
    pass


class InvalidInput(ModelyardError):
    pass


class SignatureMismatch(InvalidInput):
    pass


class ReferenceMismatch(InvalidInput):
    pass


class ModelFailed(InvalidInput):
    """Told to the caller as a client error (the model's own words), counted by monitoring and
    rollout analysis as the model's failure."""


class PayloadTooLarge(InvalidInput):
    pass


class Unavailable(ModelyardError):
    pass


class ModelNotReady(Unavailable):
    pass


class Overloaded(Unavailable):
    """The model's queue is full; ``retry_after_s`` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ModelyardError):
    pass


class ArtifactError(ModelyardError):
    pass


class UnknownFormat(ArtifactError):
    pass


class UnsafeFormat(ArtifactError):
    pass


class CorruptArtifact(ArtifactError):
    pass


class MissingExtra(ArtifactError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'modelyard[{extra}]'"
        )
        self.package = package
        self.extra = extra


class AuditError(ModelyardError):
    pass
