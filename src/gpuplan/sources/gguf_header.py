"""A minimal, fast reader of a GGUF file's header: metadata key/values and the tensor-info table.

gguf.GGUFReader builds numpy views for every element of every array, which takes seconds for a
large vocabulary (9 s for Gemma 3's 262,144 tokens). This reader walks the header with
struct.unpack_from over an mmap (or over the bytes of an upload); it never touches tensor data.

- string arrays (the vocabulary, BPE merges) are not decoded: their lengths are walked and the
  value is a lazy StringArray (len() is free, iterating decodes);
- numeric arrays are numpy arrays (copied out of the map so that it can be closed);
- it works on a prefix of a file: the header and tensor infos are enough for tensor sizes.

Format (llama.cpp ggml/include/gguf.h, gguf-py/gguf/gguf_reader.py), little-endian, v2 and v3:
  magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
  kv_count x (string key, u32 value type, value)       string = u64 length + utf-8 bytes
                                                       array  = u32 item type, u64 count, items
  tensor_count x (string name, u32 n_dims, n_dims x u64 ne, u32 ggml type, u64 offset)
  padding to general.alignment (default 32), then tensor data; a tensor's offset is relative to it.
The gguf package still supplies the enums and the per-type block sizes (GGML_QUANT_SIZES).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUFValueType -> struct format (sizes are those of the little-endian standard formats)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALAR_STRUCT = {t: struct.Struct("<" + f) for t, f in _SCALAR.items()}


class StringArray:
    """A GGUF array of strings, left undecoded: len() is known from the header; iterating,
    indexing or list() decodes (the bytes are kept, copied out of the file)."""

    __slots__ = ("_buf", "_count", "_list")

    def __init__(self, buf: bytes, count: int):
        self._buf, self._count, self._list = buf, count, None

    def __len__(self) -> int:
        return self._count

    def values(self) -> list[str]:
        if self._list is None:
            out, buf, off, unpack = [], self._buf, 0, _U64.unpack_from
            for _ in range(self._count):
                (n,) = unpack(buf, off)
                out.append(buf[off + 8 : off + 8 + n].decode("utf-8", errors="replace"))
                off += 8 + n
            self._list = out
        return self._list

    def __iter__(self) -> Iterator[str]:
        return iter(self.values())

    def __getitem__(self, i):
        return self.values()[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, StringArray):
            return self.values() == other.values()
        return isinstance(other, (list, tuple)) and self.values() == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StringArray(len={self._count})"


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table. shape is in GGUF (ggml ne) order: fastest dimension first,
    as gguf.ReaderTensor.shape; offset is relative to the data section, data_offset absolute."""

    name: str
    shape: tuple[int, ...]
    tensor_type: Any  # gguf.GGMLQuantizationType
    offset: int
    data_offset: int
    n_elements: int
    n_bytes: int


@dataclass
class GGUFHeader:
    version: int
    tensor_count: int
    kv_count: int
    kv: dict[str, Any]  # scalars as Python values, str, numpy arrays, StringArray, nested lists
    types: dict[str, tuple[int, ...]]  # GGUFValueType ids per key: (STRING,), (ARRAY, INT32), ...
    tensors: list[TensorInfo]
    alignment: int
    tensor_info_offset: int  # where the tensor-info table starts (the end of the metadata)
    data_offset: int  # where tensor data starts (after the tensor infos and padding)
    header_end: int  # end of the tensor-info table (before padding)
    file_size: int  # bytes available (a prefix's length for an upload)
    tensor_by_name: dict[str, TensorInfo] = field(repr=False, default_factory=dict)

    def get(self, key: str, default=None):
        return self.kv.get(key, default)

    @property
    def data_end(self) -> int:
        """Byte where the last tensor's data ends: the least size of a complete file."""
        return max((t.data_offset + t.n_bytes for t in self.tensors), default=self.data_offset)

    @property
    def complete(self) -> bool:
        return self.data_end <= self.file_size


class _Short(Exception):
    """The buffer ended before the header did."""


class _Bad(Exception):
    """The header is malformed (not merely cut short)."""


def read_gguf_header(source: str | Path | bytes | bytearray | memoryview, require_data: bool = False,
                     name: str | None = None) -> GGUFHeader:
    """Parse a GGUF header from a path (memory-mapped) or from bytes (e.g. the first MB of an
    upload). With require_data, a file too short to hold every tensor's data is an InputError;
    without, a prefix that holds the header and tensor infos is enough.
    Errors are InputErrors that start with `name` (default: the path, or 'GGUF data')."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "GGUF data"
        return _parse(source, label, require_data)
    p = Path(source).expanduser()
    label = name or str(p)
    check_file(p, label)
    with p.open("rb") as f:
        head = f.read(24)
        check_magic(head, label)
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:
            raise InputError(f"{label}: cannot map the file ({e})") from None
    try:
        return _parse(mm, label, require_data)
    finally:
        mm.close()  # nothing returned refers to the map: arrays and strings are copies


def check_file(p: Path, label: str) -> None:
    """A path that names a file, or one InputError saying what it is instead."""
    if not p.exists():
        raise InputError(f"{label}: no such file; give a .gguf file, a config.json or a catalog model id")
    if p.is_dir():
        raise InputError(f"{label}: is a directory; give the .gguf file inside it")


def check_magic(head: bytes, label: str) -> int:
    if head[:4] != GGUF_MAGIC:
        raise InputError(f"{label}: not a GGUF file (no GGUF magic at the start)")
    if len(head) < 8:
        raise InputError(f"{label}: truncated GGUF file: it ends ({len(head)} bytes) inside the version number;"
                         " give the whole file (or its header and tensor table, usually the first few MB)")
    (version,) = _U32.unpack_from(head, 4)
    if version not in SUPPORTED_VERSIONS:
        (swapped,) = struct.unpack_from(">I", head, 4)
        if version & 0xFFFF == 0 and swapped in SUPPORTED_VERSIONS:
            raise InputError(f"{label}: big-endian GGUF file (version {swapped}); "
                             "only little-endian GGUF files are supported")
        raise InputError(f"{label}: GGUF version {version} is not supported; accepted: versions 2 and 3")
    return version


def _parse(buf, label: str, require_data: bool) -> GGUFHeader:
    version = check_magic(bytes(buf[:8]), label)
    size = len(buf)
    where = "the header counts"
    try:
        if size < 24:
            raise _Short()
        (n_tensors,) = _U64.unpack_from(buf, 8)
        (n_kv,) = _U64.unpack_from(buf, 16)
        off = 24
        kv: dict[str, Any] = {}
        types: dict[str, tuple[int, ...]] = {}
        for i in range(n_kv):
            where = f"metadata key/value {i + 1} of {n_kv}"
            key, off = _string(buf, off)
            if key in kv:
                raise _Bad(f"duplicate metadata key {key!r}")
            (vtype,) = _U32.unpack_from(buf, off)
            kv[key], off, types[key] = _value(buf, off + 4, vtype, key)
        alignment = kv.get("general.alignment", 32)
        if types.get("general.alignment", (4,)) != (4,) or not alignment:
            raise _Bad(f"general.alignment must be a positive uint32, not {alignment!r}")
        where = f"the tensor infos ({n_tensors} tensors)"
        info_offset = off
        tensors, header_end = _tensor_infos(buf, off, n_tensors, alignment)
    except _Short:
        raise InputError(f"{label}: truncated GGUF file: it ends ({size} bytes) inside {where}") from None
    except _Bad as e:
        raise InputError(f"{label}: corrupt GGUF file: {e}") from None
    except struct.error:
        raise InputError(f"{label}: truncated GGUF file: it ends ({size} bytes) inside {where}") from None
    except RecursionError:
        raise InputError(f"{label}: corrupt GGUF file: arrays nested too deep in {where}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{label}: corrupt GGUF file: invalid UTF-8 in {where} ({e.reason})") from None
    data_offset = header_end + (-header_end % alignment)
    h = GGUFHeader(version, n_tensors, n_kv, kv, types, tensors, alignment, info_offset, data_offset, header_end, size,
                   {t.name: t for t in tensors})
    if require_data and not h.complete:
        raise InputError(f"{label}: truncated GGUF file: tensor data runs to byte {h.data_end}, file has {size}")
    return h


def _string(buf, off: int) -> tuple[str, int]:
    (n,) = _U64.unpack_from(buf, off)
    end = off + 8 + n
    if end > len(buf):
        raise _Short()
    return bytes(buf[off + 8 : end]).decode("utf-8"), end


def _value(buf, off: int, vtype: int, key: str):
    """(value, offset after it, type ids)"""
    s = _SCALAR_STRUCT.get(vtype)
    if s is not None:
        (v,) = s.unpack_from(buf, off)
        return v, off + s.size, (vtype,)
    if vtype == _STRING:
        v, off = _string(buf, off)
        return v, off, (vtype,)
    if vtype != _ARRAY:
        raise _Bad(f"{key}: unknown value type {vtype}")
    (itype,) = _U32.unpack_from(buf, off)
    (count,) = _U64.unpack_from(buf, off + 4)
    off += 12
    s = _SCALAR_STRUCT.get(itype)
    if s is not None:
        import numpy as np

        end = off + s.size * count
        if end > len(buf):
            raise _Short()
        arr = np.frombuffer(buf, dtype=np.dtype("<" + _SCALAR[itype]), count=count, offset=off).copy()
        return arr, end, (vtype, itype)
    if itype == _STRING:
        start, unpack = off, _U64.unpack_from
        size = len(buf)
        for _ in range(count):  # just the lengths: ~30 ms for 262k tokens
            if off + 8 > size:
                raise _Short()
            (n,) = unpack(buf, off)
            off += 8 + n
        if off > size:
            raise _Short()
        return StringArray(bytes(buf[start:off]), count), off, (vtype, itype)
    if itype == _ARRAY:
        items, sub = [], (itype,)
        for i in range(count):  # each item: u32 item type, u64 count, items (no type prefix of its own)
            v, off, t = _value(buf, off, _ARRAY, key)
            items.append(v)
            if i == 0:
                sub = t
        return items, off, (vtype,) + sub
    raise _Bad(f"{key}: unknown array item type {itype}")


def _tensor_infos(buf, off: int, count: int, alignment: int) -> tuple[list[TensorInfo], int]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    raw = []
    u32, u64 = _U32.unpack_from, _U64.unpack_from
    for i in range(count):
        name, off = _string(buf, off)
        (n_dims,) = u32(buf, off)
        if n_dims > MAX_DIMS:
            raise _Bad(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = struct.unpack_from(f"<{n_dims}Q", buf, off + 4)
        off += 4 + 8 * n_dims
        (ttype,) = u32(buf, off)
        (toff,) = u64(buf, off + 4)
        off += 12
        raw.append((name, dims, ttype, toff))
    start = off + (-off % alignment)
    tensors, seen = [], set()
    for name, dims, ttype, toff in raw:
        if name in seen:
            raise _Bad(f"duplicate tensor name {name!r}")
        seen.add(name)
        try:
            qtype = GGMLQuantizationType(ttype)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise _Bad(f"tensor {name!r} has unknown ggml type {ttype}") from None
        n = 1
        for d in dims:
            n *= d
        tensors.append(TensorInfo(name, tuple(dims), qtype, toff, start + toff, n, n * type_size // block))
    return tensors, off
