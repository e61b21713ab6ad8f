"""Typed exceptions of unet-sdk.

Every error a user can cause derives from :class:`UnetSdkError` and from the builtin that fits
(``ValueError`` for bad input, ``RuntimeError`` for an unusable environment), so callers can catch
either. Messages name the problem and, where there is one, the fix.
"""
from __future__ import annotations


class UnetSdkError(Exception):
    """Base class of every error raised on purpose by unet-sdk."""


class InvalidInputError(UnetSdkError, ValueError):
    """An array or file given by the user is unusable: shape, ndim, dtype, NaN/Inf, empty, range."""


class ModelError(UnetSdkError, ValueError):
    """A model file is unreadable, corrupt, not an ONNX model, or lacks/has invalid unet-sdk metadata."""


class RuntimeUnavailableError(UnetSdkError, RuntimeError):
    """ONNX Runtime is missing, or the requested execution provider (e.g. CUDA) cannot be used."""


class OutputExistsError(UnetSdkError, FileExistsError):
    """Refusing to overwrite an existing output file without ``overwrite=True`` / ``--force``."""
