"""Check a SavedModel directory before TensorFlow is imported: one line on what is wrong.

``mlops serve --model-dir`` on a broken export used to import TensorFlow first and bury the
reason under its start-up noise and a long C++ status. This module reads the files of the
export with the standard library and ``protobuf`` only (no TensorFlow), in well under a
second, and names the first problem: the file, what is wrong with it, and the fix.

What is checked (what TensorFlow would trip over, in the order it reads):

* the directory exists and is a directory;
* ``saved_model.pb`` is there, is protobuf wire format all the way through (a truncated or
  overwritten file is not) and holds at least one MetaGraph, itself well-formed;
* ``variables/variables.index`` is a complete checkpoint index (its footer's magic number
  is the last thing written); every data shard it names exists and is at least as long as
  the tensors the index places in it (a truncated ``variables.data-*`` is caught here).

A file that passes may still fail in TensorFlow (a flipped byte inside a graph); the loader
then reports that in one line too (:func:`mlops_sessions.server.runtime.load_saved_model`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import empty_pb2, unknown_fields
from google.protobuf.message import DecodeError

FIX = "re-export the model (model.export(DIR), or `mlops train --force` for a run)"
# The last 8 bytes of a TensorFlow table file (LevelDB's format): written last, so a file
# cut short anywhere lacks them.
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type + crc32c after every block
UNCOMPRESSED = 0
# Field numbers: SavedModel.meta_graphs, BundleHeaderProto.num_shards and BundleEntryProto's
# shard_id / offset / size (tensorflow/core/protobuf/{saved_model,tensor_bundle}.proto).
META_GRAPHS = 2
NUM_SHARDS = 1
SHARD_ID, OFFSET, SIZE = 3, 4, 5
LENGTH_DELIMITED, VARINT = 2, 0


class Damaged(Exception):
    """A file of the export is damaged; the message is the one line to print."""


def problem(path: Path) -> str | None:
    """The one line that says what is wrong with the SavedModel at path, or None."""
    try:
        _check(path)
    except Damaged as exc:
        return str(exc)
    return None


def _check(path: Path) -> None:
    if not path.exists():
        raise Damaged(f"{path} does not exist; {FIX}")
    if not path.is_dir():
        raise Damaged(f"{path} is a file, not a SavedModel directory; {FIX}")
    graph = path / "saved_model.pb"
    if not graph.exists() and (path / "saved_model.pbtxt").is_file():
        graph_text = True
    elif not graph.exists():
        raise Damaged(f"{path} is not a SavedModel directory (no saved_model.pb); {FIX}")
    else:
        graph_text = False
    if not graph_text:
        _check_graph(graph)
    _check_variables(path / "variables")


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except IsADirectoryError:
        raise Damaged(f"{file} is a directory where a file belongs; {FIX}") from None
    except OSError as exc:
        raise Damaged(f"{file} cannot be read ({exc.strerror}); {FIX}") from None


def _fields(data: bytes) -> list[unknown_fields.UnknownField]:
    """The top-level fields of a protobuf message, whatever its type; DecodeError if the
    bytes are not wire format (truncated, overwritten)."""
    message = empty_pb2.Empty()
    message.ParseFromString(data)
    return list(unknown_fields.UnknownFieldSet(message))


def _check_graph(graph: Path) -> None:
    data = _read(graph)
    if not data:
        raise Damaged(f"{graph} is empty; {FIX}")
    try:
        metas = [f for f in _fields(data) if f.field_number == META_GRAPHS]
        if not metas or any(f.wire_type != LENGTH_DELIMITED for f in metas):
            raise Damaged(f"{graph} holds no MetaGraph, so it is not a SavedModel; {FIX}")
        for meta in metas:
            _fields(meta.data)
    except DecodeError:
        raise Damaged(
            f"{graph} is not a complete SavedModel protobuf (truncated or corrupt, "
            f"{len(data)} bytes); {FIX}"
        ) from None


def _check_variables(directory: Path) -> None:
    if not directory.exists():
        return  # a model without variables (constants only) has no variables/ at all
    if not directory.is_dir():
        raise Damaged(f"{directory} is a file where the variables directory belongs; {FIX}")
    index = directory / "variables.index"
    if not index.exists():
        if any(directory.glob("variables.data-*")):
            raise Damaged(f"{index} is missing (the data shards are there); {FIX}")
        return
    data = _read(index)
    if len(data) < FOOTER_BYTES or struct.unpack("<Q", data[-8:])[0] != TABLE_MAGIC:
        raise Damaged(f"{index} is truncated or not a checkpoint index ({len(data)} bytes); {FIX}")
    try:
        entries = list(_table_entries(data))
    except (IndexError, ValueError, DecodeError):
        raise Damaged(f"{index} is corrupt (its blocks do not parse); {FIX}") from None
    _check_shards(directory, index, entries)


def _check_shards(directory: Path, index: Path, entries: list[tuple[bytes, bytes]]) -> None:
    header = dict(entries).get(b"")
    if header is None:
        raise Damaged(f"{index} has no header entry, so it is not a checkpoint index; {FIX}")
    shards = _varint_field(_fields(header), NUM_SHARDS) or 1
    needed = [0] * shards
    for key, value in entries:
        if not key:
            continue
        fields = _fields(value)
        shard = _varint_field(fields, SHARD_ID) or 0
        end = (_varint_field(fields, OFFSET) or 0) + (_varint_field(fields, SIZE) or 0)
        if shard >= shards:
            raise Damaged(f"{index} names shard {shard} of {shards}: it is corrupt; {FIX}")
        needed[shard] = max(needed[shard], end)
    for shard, need in enumerate(needed):
        file = directory / f"variables.data-{shard:05d}-of-{shards:05d}"
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise Damaged(f"{file} is missing (the index names it); {FIX}") from None
        if file.is_dir():
            raise Damaged(f"{file} is a directory where a data shard belongs; {FIX}")
        if size < need:
            raise Damaged(
                f"{file} is truncated ({size} bytes; the index places tensors up to byte "
                f"{need}); {FIX}"
            )


def _varint_field(fields: list[unknown_fields.UnknownField], number: int) -> int | None:
    for field in fields:
        if field.field_number == number and field.wire_type == VARINT:
            return int(field.data)
    return None


def _table_entries(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every entry of a TensorFlow table file (LevelDB's layout: data
    blocks, a meta-index, an index of the data blocks, a footer). Blocks written
    compressed are skipped: their tensors' places cannot be read without the codec."""
    footer = data[-FOOTER_BYTES:]
    _, at = _varint(footer, 0)  # meta-index handle: offset, size
    _, at = _varint(footer, at)
    index_offset, at = _varint(footer, at)
    index_size, _ = _varint(footer, at)
    for _, handle in _block_entries(data, index_offset, index_size):
        offset, at = _varint(handle, 0)
        size, _ = _varint(handle, at)
        yield from _block_entries(data, offset, size)


def _block_entries(data: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(data) - FOOTER_BYTES:
        raise ValueError("block beyond the end of the file")
    if data[end] != UNCOMPRESSED:
        return
    block = data[offset:end]
    (restarts,) = struct.unpack("<I", block[-4:])
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise ValueError("restart array larger than its block")
    key = b""
    at = 0
    while at < limit:
        shared, at = _varint(block, at)
        unshared, at = _varint(block, at)
        value_size, at = _varint(block, at)
        if shared > len(key) or at + unshared + value_size > limit:
            raise ValueError("entry beyond its block")
        key = key[:shared] + block[at : at + unshared]
        at += unshared
        yield key, block[at : at + value_size]
        at += value_size


def _varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, at
        if shift > 63:
            raise ValueError("varint longer than 64 bits")
