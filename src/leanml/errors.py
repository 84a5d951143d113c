"""The one exception tree of leanml.

Every error leanml raises on purpose derives from :class:`LeanMLError`, so callers can catch
the whole family in one ``except`` and still tell the cases apart::

    LeanMLError
    ├── ConfigError                 a setting has a bad value (names the key and the value)
    ├── ParameterError (ValueError) a function argument is invalid
    ├── DatasetError                a dataset cannot be found, read or verified
    │   ├── DatasetNotFoundError    no local copy and no way to download it
    │   └── DataFileError           a user's data file is unusable (names file, row, column)
    ├── ArtifactError               a model artifact on disk cannot be trusted or read
    │   ├── ArtifactMissingError    a manifest or payload file is absent
    │   ├── ChecksumMismatchError   a payload's sha256 differs from the manifest (tampered)
    │   ├── UntrustedTypeError      a skops payload holds a type outside leanml's allow-list
    │   └── UnsupportedFormatError  a manifest's format version this leanml cannot read
    ├── RegistryError               registry bookkeeping errors
    │   ├── ModelNotFoundError      no such model, version or variant
    │   └── VariantUnavailableError the requested variant cannot serve (and no fallback exists)
    ├── CompressionError            compression failed for a reason other than the guard
    ├── MonitorError                the monitor was misused (e.g. recording after close)
    └── ServingError                the HTTP service cannot start or serve

CLI commands turn any ``LeanMLError`` into a message on stderr and the exit code in
:attr:`LeanMLError.exit_code` (2 for usage-like errors, 1 otherwise).
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ArtifactMissingError",
    "ChecksumMismatchError",
    "CompressionError",
    "ConfigError",
    "DataFileError",
    "DatasetError",
    "DatasetNotFoundError",
    "LeanMLError",
    "ModelNotFoundError",
    "MonitorError",
    "ParameterError",
    "RegistryError",
    "ServingError",
    "UnsupportedFormatError",
    "UntrustedTypeError",
    "VariantUnavailableError",
]


class LeanMLError(Exception):
    """Root of every error leanml raises on purpose."""

    exit_code: int = 1


class ConfigError(LeanMLError):
    """A configuration key has an invalid value."""

    exit_code = 2


class ParameterError(LeanMLError, ValueError):
    """A function or CLI parameter is invalid; :attr:`param` names it when known."""

    exit_code = 2

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class DatasetError(LeanMLError):
    """A dataset cannot be read or verified."""


class DatasetNotFoundError(DatasetError):
    """No local copy of a dataset was found and it could not be downloaded."""


class DataFileError(DatasetError):
    """A user's data file cannot be used: it names the file, the row and the column.

    Bad input, so the CLI exits with 2.
    """

    exit_code = 2


class ArtifactError(LeanMLError):
    """A model artifact cannot be trusted or read."""


class ArtifactMissingError(ArtifactError):
    """A manifest or payload file is missing."""


class ChecksumMismatchError(ArtifactError):
    """A payload file's sha256 does not match the manifest."""


class UntrustedTypeError(ArtifactError):
    """A skops payload references a type that is not on leanml's allow-list."""


class UnsupportedFormatError(ArtifactError):
    """The artifact's format version is not one this leanml can read."""


class RegistryError(LeanMLError):
    """Registry bookkeeping error."""


class ModelNotFoundError(RegistryError):
    """No such model, version or variant in the registry."""


class VariantUnavailableError(RegistryError):
    """The requested variant cannot be served and no fallback exists."""


class CompressionError(LeanMLError):
    """Compression failed for a reason other than the accuracy guard."""


class MonitorError(LeanMLError):
    """The monitor was used in a way it does not support."""


class ServingError(LeanMLError):
    """The HTTP service cannot start or serve."""
