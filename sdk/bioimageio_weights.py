"""TorchScript and PyTorch state-dict weights of BioImage Model Zoo packages, converted to ONNX once.

:mod:`sdk.bioimageio` runs ONNX; a package whose only weights are TorchScript or a state dict is converted
here with torch (the ``train`` extra; ``sdk`` never imports torch otherwise) and the ONNX kept in
``$UNET_SDK_CACHE/bioimageio`` (default ``~/.cache/unet-sdk``), named by the SHA-256 of what defines the
network (weights; for a state dict also the architecture's code, callable and kwargs), so later loads
skip torch entirely.

A state dict is only weights: the network is rebuilt by the package's Python ``architecture``, which means
running the package's code. unet-sdk does that only when asked: ``UNET_SDK_TRUST_PACKAGE_CODE=1`` (or
``trust_code=True``), for packages from a source you trust. The weights themselves are read with
``torch.load(weights_only=True)``, which builds no objects beyond tensors.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ModelError, RuntimeUnavailableError
from .atomic import atomic_output
from .model_metadata import ModelMetadata

logger = logging.getLogger(__name__)

TRUST_ENV = "UNET_SDK_TRUST_PACKAGE_CODE"
ONNX_OPSET = 17


def cache_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted weights are kept: ``cache_dir``, else ``$UNET_SDK_CACHE``, else ~/.cache/unet-sdk;
    converted files go to its ``bioimageio`` folder."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("UNET_SDK_CACHE", Path.home() / ".cache" / "unet-sdk"))


def _torch(where: str, kind: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"{where}: the package has {kind} weights only; converting them to ONNX needs torch: "
            "pip install 'unet-sdk[train]' (once: the result is cached)"
        ) from exc
    return torch


def _cached(key: bytes, where: str, cache_dir: Any, build: Callable[[], Any], metadata: ModelMetadata) -> bytes:
    """The cached ONNX for ``key``, else ``build()``'s torch module exported and cached."""
    target = cache_directory(cache_dir) / "bioimageio" / f"{hashlib.sha256(key).hexdigest()}.onnx"
    if target.is_file():
        return target.read_bytes()
    torch = _torch(where, "PyTorch")
    module = build()
    side = metadata.valid_input_size_at_least(max(metadata.min_input_size, 4 * metadata.input_size_multiple))
    example = torch.zeros((1, metadata.in_channels) + (side,) * metadata.spatial_dims)
    dynamic = {0: "batch"} | {2 + i: f"space{i}" for i in range(metadata.spatial_dims)}
    buffer = io.BytesIO()
    logger.info("%s: converting the weights to ONNX (once; cached in %s)", where, target.parent)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript modules need the TorchScript exporter (dynamo=False), which torch marks deprecated
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, input_names=["input"], output_names=["output"],
                dynamic_axes={"input": dynamic, "output": dynamic}, opset_version=ONNX_OPSET,
            )
    except Exception as exc:  # torch raises many types for graphs it cannot export
        raise ModelError(f"{where}: the network cannot be exported to ONNX ({type(exc).__name__}: {exc})") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target, overwrite=True) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    return buffer.getvalue()


def torchscript_to_onnx(data: bytes, metadata: ModelMetadata, *, where: str, cache_dir: Any = None) -> bytes:
    """ONNX bytes of the TorchScript module in ``data`` (converted once, then from the cache)."""

    def build() -> Any:
        torch = _torch(where, "TorchScript")
        try:
            return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
        except Exception as exc:  # torch's own error types for bad archives
            raise ModelError(f"{where}: the torchscript weights do not load ({type(exc).__name__}: {exc})") from exc

    return _cached(b"torchscript\0" + data, where, cache_dir, build, metadata)


def state_dict_to_onnx(
    data: bytes, architecture: Mapping[str, Any], code: bytes | None, metadata: ModelMetadata, *,
    where: str, cache_dir: Any = None, strict: bool = True, trust_code: bool | None = None,
) -> bytes:
    """ONNX bytes of the network ``architecture`` builds (the package's ``code`` or an installed library's
    ``import_from``), loaded with the state dict ``data``; running package code needs ``trust_code`` (default:
    ``$UNET_SDK_TRUST_PACKAGE_CODE == "1"``)."""
    kwargs = architecture.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelError(f"{where}: architecture kwargs are not a mapping")
    name = architecture["callable"]
    key = b"\0".join([b"state_dict", data, code or str(architecture.get("import_from")).encode(), name.encode(),
                      json.dumps(kwargs, sort_keys=True).encode()])

    def build() -> Any:
        torch = _torch(where, "pytorch_state_dict")
        if code is not None:
            trusted = os.environ.get(TRUST_ENV) == "1" if trust_code is None else trust_code
            if not trusted:
                raise ModelError(
                    f"{where}: its pytorch_state_dict weights need the package's Python code "
                    f"({architecture.get('source')}) run to rebuild the network; unet-sdk runs package code "
                    f"only when told to: set {TRUST_ENV}=1 for a package you trust (converted once, then cached)"
                )
            module = types.ModuleType(f"bioimageio_architecture_{hashlib.sha256(code).hexdigest()[:12]}")
            exec(compile(code, str(architecture.get("source")), "exec"), module.__dict__)  # trusted by the user
        else:
            try:
                module = importlib.import_module(str(architecture.get("import_from")))
            except ImportError as exc:
                raise ModelError(f"{where}: architecture library {architecture.get('import_from')!r} is not installed") from exc
        factory = getattr(module, name, None)
        if not callable(factory):
            raise ModelError(f"{where}: the architecture has no callable {name!r}")
        net = factory(**kwargs)
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=strict)
        except Exception as exc:  # pickle, shape and key errors of torch
            raise ModelError(f"{where}: the state dict does not load into {name} ({type(exc).__name__}: {exc})") from exc
        return net.eval()

    return _cached(key, where, cache_dir, build, metadata)
