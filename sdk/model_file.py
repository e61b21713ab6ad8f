"""What an ONNX file holds, read straight from its protobuf bytes (``sdk`` does not depend on ``onnx``):
its ``metadata_props`` and the SHA-256 digest of its graph.

The digest (``unet_sdk.weights_sha256``) covers the serialised ``GraphProto`` (every weight stored in the
file, and the layers that use them) followed by the bytes of each externally stored weight, in the
order of the graph's initializers. The metadata sit outside the graph, so writing the digest into
them does not change it. ``export/`` stamps it (:func:`export.onnx_export.stamp_model`); the runtime
recomputes and compares it on load, so a flipped bit in the weights is a :class:`ModelError`, not a
model that runs and predicts wrong.

Protobuf wire format: each field is a varint key ``field_number << 3 | wire_type`` followed by a varint
(type 0), 8 bytes (1), a varint length and that many bytes (2), or 4 bytes (5).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ModelError

_MODEL_GRAPH, _MODEL_METADATA = 7, 14  # ModelProto.graph, ModelProto.metadata_props
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14  # TensorProto fields
_ENTRY_KEY, _ENTRY_VALUE = 1, 2  # StringStringEntryProto
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_READ_CHUNK = 1 << 24


class _Malformed(Exception):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """(field number, wire type, value) of a message in ``data[start:end]``; for length-delimited
    fields the value is the payload's (start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Malformed("truncated fixed-width field")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Malformed("a field runs past the end of its message")
            value, pos = (pos, pos + length), pos + length
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        yield number, wire, value


def _text(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0] : span[1]].decode("utf-8")


def _entry(data: bytes, span: tuple[int, int]) -> tuple[str, str]:
    key = value = ""
    for number, wire, field in _fields(data, *span):
        if wire == 2 and number == _ENTRY_KEY:
            key = _text(data, field)
        elif wire == 2 and number == _ENTRY_VALUE:
            value = _text(data, field)
    return key, value


@dataclass(frozen=True)
class ExternalWeight:
    """Where an initializer's bytes are stored outside the model file."""

    tensor: str
    location: str
    offset: int
    length: int | None


@dataclass(frozen=True)
class ModelFile:
    """The parts of an ONNX file the runtime checks before handing it to ONNX Runtime."""

    props: dict[str, str]
    graph: tuple[int, int]  # span of the serialised GraphProto in the file's bytes
    external: tuple[ExternalWeight, ...]


def _external_weight(data: bytes, span: tuple[int, int]) -> ExternalWeight | None:
    name, location, entries = "", 0, {}
    for number, wire, field in _fields(data, *span):
        if wire == 2 and number == _TENSOR_NAME:
            name = _text(data, field)
        elif wire == 0 and number == _TENSOR_LOCATION:
            location = field
        elif wire == 2 and number == _TENSOR_EXTERNAL:
            key, value = _entry(data, field)
            entries[key] = value
    if location != _EXTERNAL:
        return None
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise _Malformed(f"initializer {name!r} has a non-integer external offset or length") from None
    if "location" not in entries or offset < 0 or (length is not None and length < 0):
        raise _Malformed(f"initializer {name!r} has an incomplete external data record")
    return ExternalWeight(name, entries["location"], offset, length)


def read_model_file(data: bytes, source: str = "<bytes>") -> ModelFile:
    """Metadata and graph location of the ONNX model in ``data``; :class:`ModelError` if the bytes are
    not a well-formed ModelProto."""
    try:
        props: dict[str, str] = {}
        graphs = []
        for number, wire, field in _fields(data, 0, len(data)):
            if wire == 2 and number == _MODEL_GRAPH:
                graphs.append(field)
            elif wire == 2 and number == _MODEL_METADATA:
                key, value = _entry(data, field)
                props[key] = value
        if len(graphs) != 1:
            raise _Malformed(f"{len(graphs)} graphs (a model has one)")
        external = tuple(
            weight
            for number, wire, field in _fields(data, *graphs[0])
            if wire == 2 and number == _GRAPH_INITIALIZER
            for weight in [_external_weight(data, field)]
            if weight is not None
        )
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{source}: not a loadable ONNX model (malformed protobuf: {exc}); the file is corrupt or not an "
            "ONNX model; re-export it with `unet-export onnx`"
        ) from None
    return ModelFile(props, graphs[0], external)


def external_path(folder: Path, location: str, source: str) -> Path:
    """The file ``location`` names, which must lie inside the model's ``folder`` (as ONNX Runtime
    requires): :class:`ModelError` for absolute paths or ones that leave it (``../``, symlinks)."""
    root = folder.resolve()
    path = (root / location).resolve()
    if Path(location).is_absolute() or not path.is_relative_to(root):
        raise ModelError(
            f"{source}: external weights at {location!r} lie outside the model's folder {root}; refusing to read them"
        )
    return path


def check_external(model: ModelFile, folder: Path | None, source: str = "<bytes>") -> None:
    """:class:`ModelError` unless every external weight file lies inside ``folder`` (``None``: the
    model was given as bytes, and then must keep all its weights inside)."""
    if model.external and folder is None:
        raise ModelError(
            f"{source}: the model keeps its weights in external files ({model.external[0].location!r}); "
            "load it from its path, not from bytes"
        )
    for weight in model.external:
        external_path(folder, weight.location, source)


def graph_sha256(data: bytes, model: ModelFile, *, folder: Path | None, source: str = "<bytes>") -> str:
    """Hex SHA-256 of the serialised graph followed by every external weight's bytes (see module doc).

    ``folder``: where external weights live (the model file's folder); ``None`` for a model given as
    bytes, which then must not have any.
    """
    check_external(model, folder, source)
    digest = hashlib.sha256(memoryview(data)[model.graph[0] : model.graph[1]])
    for weight in model.external:
        path = external_path(folder, weight.location, source)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                length = size - weight.offset if weight.length is None else weight.length
                if weight.offset + length > size:
                    raise ModelError(
                        f"{source}: external weights of {weight.tensor!r} need bytes {weight.offset}.."
                        f"{weight.offset + length} of {path.name}, which has {size}: the file is truncated"
                    )
                handle.seek(weight.offset)
                while length > 0:
                    chunk = handle.read(min(length, _READ_CHUNK))
                    if not chunk:
                        raise ModelError(f"{source}: {path.name} ended while its weights were read")
                    digest.update(chunk)
                    length -= len(chunk)
        except OSError as exc:
            raise ModelError(f"{source}: cannot read the external weights {path}: {exc}") from exc
    return digest.hexdigest()
