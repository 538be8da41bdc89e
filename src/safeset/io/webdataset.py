"""img2dataset `webdataset` output: `00000.tar` shards with `00000.parquet` and `00000_stats.json` beside them.

One sample model, shared by the scan and `clean`, so that a release carries, byte for byte, what the scan checked:

* Rows are the sidecar parquet's rows (failed downloads included), then the tar's samples the sidecar lacks, in
  order of first appearance.
* A member belongs to the sample whose key is the longest dot-prefix of its basename that the sidecar lists
  (`img.001.jpg` belongs to `img.001`), else to the part before the first dot (the webdataset convention).
* Members are classified by content, not name: image bytes by their magic numbers whatever the extension, then
  `.txt` captions (UTF-8), `.json` metadata (a JSON object) and `.npy` arrays. Every image member is hashed and
  matched (one batch entry per image). A member that fits none of these, duplicate member names, a sample whose
  members are split across the tar, over-size and sparse members make the row errored, and such members are
  never released.
* Each batch lists the members of its rows (`MEMBERS_SCHEMA`) with the xxh3-128 of the bytes read; `write_shard`
  copies only members listed as checked, re-hashing each as it copies, and refuses a shard that changed.
* A shard is read to its end or fails whole: tarfile stops silently at a truncated or junk header, so the tar must
  end in its zero end-of-archive blocks; it must hold as many samples as its `_stats.json` counts successes; and
  a sidecar that cannot be read fails the shard rather than counting as empty.

The tar is read in two passes over one open file. The headers first (tarfile seeks past member data, and
`FastTarInfo` parses the common header several times faster than tarfile does): they settle keys, rows,
duplicates and the archive's integrity before any member byte is read. Then member data by offset, one sample at a
time. A metadata-only scan stops after the first pass: it reads no member, so tar samples the sidecar does not
describe are errored rows rather than rows it pretends to have checked. In scans that read images, URLs and
captions still come from the sidecar where it has them, but the `.txt` and `.json` members are read too (they go
into the release, so they must be checked) and must agree with it.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import zlib
from collections import Counter, deque
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from safeset.errors import ColumnError, InputError
from safeset.fsutil import atomic_path
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import EMBEDDING_DTYPES, MEMBERS_SCHEMA, RowBatch
from safeset.io.columns import ColumnMap, check_column_types, resolve_columns, text_column
from safeset.io.location import open_binary, parquet_source
from safeset.io.parquet import PARQUET_ERRORS, _binary_columns
from safeset.io.stats import read_stats, stats_count, stats_path_for, write_cleaned_stats

#: Image files by name: folder datasets and format detection go by extension; tar members go by content.
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
TAR_ERRORS = (tarfile.TarError, EOFError, OSError)

#: Images one sample may hold: web datasets hold one per sample; more is hostile, and one sample is one batch.
MAX_IMAGES_PER_SAMPLE = 256
#: A batch is closed once its images reach this many bytes, whatever its row count.
BATCH_IMAGE_BYTES = 256 * 1024 * 1024
#: POSIX ends an archive with two zero blocks; anything but zeros after the last member means lost members.
END_OF_ARCHIVE_BYTES = 2 * tarfile.BLOCKSIZE

# Member kinds.
IMAGE, CAPTION, METADATA, ARRAY = "image", "caption", "metadata", "array"

MISSING_FROM_TAR = "image listed as downloaded but missing from tar"
NOT_CHECKED_BY_METADATA_SCAN = "in the tar but not in the sidecar; a metadata-only scan does not check it"
UNCLASSIFIED = (
    "is neither an image (JPEG, PNG, GIF, WebP, BMP, TIFF) nor a .txt caption, .json metadata or .npy array; "
    "not released"
)


# --------------------------------------------------------------------------------------------------------------
# members: names, keys and content


def sniff_image(data: bytes) -> str | None:
    """The image format these bytes start with (magic numbers), or None.

    BMP's two-byte `BM` also starts captions ("BMW ..."), so a BMP must also give a DIB header size in the range
    decoders know (12 to 124, little-endian), which text never does (it would need NUL bytes).
    """
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM" and len(data) >= 18 and 12 <= int.from_bytes(data[14:18], "little") <= 124:
        return "BMP"
    return None


def sample_key(name: str) -> tuple[str, str]:
    """Split a member name into (sample key, extension) the webdataset way: at the basename's first dot."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def member_key(name: str, known_keys: Container[str]) -> str:
    """The sample a member belongs to: the longest dot-prefix of its basename that is a known (sidecar) key, else
    the part before the first dot. A leading `./` (tars made with `tar -C dir .`) is not part of the key."""
    while name.startswith("./"):
        name = name[2:]
    directory, slash, base = name.rpartition("/")
    end = len(base)
    while end > 0:
        candidate = directory + slash + base[:end]
        if candidate in known_keys:
            return candidate
        end = base.rfind(".", 0, end)
    return directory + slash + base.split(".", 1)[0]


def member_extension(name: str, key: str) -> str:
    """The member's last extension after its key (`img.001.JPG` of key `img.001` gives `jpg`; none gives '')."""
    base = name.rpartition("/")[2]
    rest = base[len(key.rpartition("/")[2]) :]
    return rest.rpartition(".")[2].lower() if "." in rest else ""


def check_member(member: tarfile.TarInfo, path: Path) -> bool:
    """Refuse members that could escape the shard, are not plain files, or whose header is damaged; returns False
    for directories (they carry no data and are not released)."""
    name = member.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"tar member name {name!r} is not valid UTF-8; shard refused", path) from None
    if name.startswith("/") or ".." in name.split("/"):
        raise InputError(f"tar member {name!r} has an absolute or parent-relative path; shard refused", path)
    if member.isdir():
        return False
    if not member.isfile():
        raise InputError(f"tar member {name!r} is not a regular file; shard refused", path)
    if member.size < 0:
        raise InputError(f"tar member {name!r} has a negative size (a damaged header); shard refused", path)
    return True


@dataclass(slots=True)
class MemberContent:
    kind: str | None  # IMAGE, CAPTION, METADATA, ARRAY; None when unclassifiable
    value: object = None  # the caption text or the metadata object
    problem: str | None = None


def classify_member(name: str, extension: str, data: bytes) -> MemberContent:
    """What a member holds, by content first: image magic wins over any extension (a flagged image named `.txt`
    is still an image to hash), then the extension says which text or array format must parse."""
    if sniff_image(data) is not None:
        return MemberContent(IMAGE)
    if extension == "txt":
        try:
            return MemberContent(CAPTION, data.decode("utf-8"))
        except UnicodeDecodeError:
            return MemberContent(CAPTION, problem=f"member {name!r} is not UTF-8 text; not released")
    if extension == "json":
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return MemberContent(METADATA, problem=f"member {name!r} is not UTF-8 JSON; not released")
        if not isinstance(value, dict):
            return MemberContent(METADATA, problem=f"member {name!r} is JSON but not an object; not released")
        return MemberContent(METADATA, value)
    if extension == "npy":
        problem = _npy_problem(data)
        return MemberContent(ARRAY, problem=f"member {name!r} {problem}; not released" if problem else None)
    return MemberContent(None, problem=f"member {name!r} {UNCLASSIFIED}")


def _npy_problem(data: bytes) -> str | None:
    """Why these bytes are not an embedding `.npy` (a float16/float32 vector or matrix), from its header alone: a
    header may claim any shape, so nothing is allocated from it. Other arrays could carry anything (the bytes of
    an image, say) where no matcher looks, so they are not released."""
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return f"is a .npy of version {version}, which is not read"
    except (ValueError, SyntaxError, TypeError, OSError, EOFError, RecursionError, MemoryError):
        return "is not a readable .npy array"
    if dtype not in EMBEDDING_DTYPES or len(shape) > 2:
        return f"is a .npy of {dtype} with shape {shape}, not a float16/float32 embedding"
    if len(data) - handle.tell() != math.prod(shape) * dtype.itemsize:
        return "is a .npy whose data does not match its header"
    return None


def _text(value: object) -> str | None:
    """A metadata value usable as text (a string arrow can hold), else None."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON escape of a lone surrogate
        return None
    return value


# --------------------------------------------------------------------------------------------------------------
# the tar's headers

_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)
_LOW_7_BITS = bytes(b & 0x7F for b in range(256))
_HIGH_BYTES = bytes(range(128, 256))


def _byte_sum(block: bytes) -> int:
    """The sum of a header's bytes (its checksum) at C speed: adler32's low half is 1 + the sum mod 65521, exact for
    the low 7 bits of 512 bytes (at most 65024); bytes with the high bit set add 128 each."""
    low = (zlib.adler32(block.translate(_LOW_7_BITS)) & 0xFFFF) - 1
    return low + 128 * (len(block) - len(block.translate(None, _HIGH_BYTES)))


def _octal(field: bytes) -> int:
    """A numeric header field the way tarfile's `nti` reads octal (base-256 fields are left to tarfile)."""
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _string(field: bytes, encoding: str, errors: str) -> str:
    return field.split(b"\0", 1)[0].decode(encoding, errors)


class FastTarInfo(tarfile.TarInfo):
    """tarfile's TarInfo with a faster `frombuf` for the common header (octal numbers, unsigned checksum).

    tarfile spends three quarters of a header walk in `frombuf` (~70 µs a header: thirteen field decodes and a
    checksum summed in Python), which made walking a 30 k-member shard take seconds. This parses the same fields
    into the same attributes and defers every other case (base-256 numbers, signed checksums, old GNU sparse
    headers, damaged or empty blocks) to tarfile, so both read the same archive the same way; all extended-header
    handling (PAX, GNU long names) stays tarfile's.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        if len(buf) != tarfile.BLOCKSIZE or buf == _ZERO_BLOCK or buf[156:157] == tarfile.GNUTYPE_SPARSE:
            return super().frombuf(buf, encoding, errors)
        try:  # a base-256 number is not ASCII, so int() refuses it too and tarfile reads it
            chksum = _octal(buf[148:156])
            mode, uid, gid = _octal(buf[100:108]), _octal(buf[108:116]), _octal(buf[116:124])
            size, mtime = _octal(buf[124:136]), _octal(buf[136:148])
            devmajor, devminor = _octal(buf[329:337]), _octal(buf[337:345])
        except ValueError:
            return super().frombuf(buf, encoding, errors)  # tarfile refuses it, with its own error
        if chksum != 256 + _byte_sum(buf) - _byte_sum(buf[148:156]):
            return super().frombuf(buf, encoding, errors)  # a signed checksum, or a bad one
        obj = cls()
        obj.name = _string(buf[0:100], encoding, errors)
        obj.mode, obj.uid, obj.gid, obj.size, obj.mtime = mode, uid, gid, size, mtime
        obj.chksum = chksum
        obj.type = buf[156:157]
        obj.linkname = _string(buf[157:257], encoding, errors)
        obj.uname = _string(buf[265:297], encoding, errors)
        obj.gname = _string(buf[297:329], encoding, errors)
        obj.devmajor, obj.devminor = devmajor, devminor
        prefix = _string(buf[345:500], encoding, errors)
        # As tarfile: old V7 directories, redundant slashes, ustar long names.
        if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        if prefix and obj.type not in tarfile.GNU_TYPES:
            obj.name = prefix + "/" + obj.name
        return obj


def walk_tar(archive: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
    """The archive's regular-file members in order, headers only (`archive.members` is emptied as it goes, so
    memory stays bounded). When they are exhausted, checks that the archive really ended (see `check_archive_end`).
    Any damage is an InputError naming the shard."""
    last_header = -1
    try:
        for member in archive:
            archive.members = []  # tarfile keeps every header it has read otherwise
            if member.offset <= last_header:  # a header pointing backwards would loop forever
                raise InputError(f"damaged tar: the header at byte {member.offset} repeats an earlier one", path)
            last_header = member.offset
            if check_member(member, path):
                yield member
        end = archive.offset
        fileobj = archive.fileobj
        assert fileobj is not None
        check_archive_end(fileobj, end, path)
    except InputError:
        raise
    except TAR_ERRORS as exc:
        raise InputError(f"truncated or unreadable tar: {exc}", path) from exc


def check_archive_end(handle: BinaryIO, end: int, path: Path) -> None:
    """tarfile stops quietly at a header it cannot read (a truncated file, a junk block) as if the archive had
    ended: check that what follows the last member is the two zero end-of-archive blocks and zero padding."""
    size = handle.seek(0, os.SEEK_END)
    if end > size:
        raise InputError(f"truncated tar: its last member runs past the end of the file ({size} bytes)", path)
    handle.seek(end)
    zeros = 0
    while chunk := handle.read(1 << 20):
        if chunk.count(0) != len(chunk):
            at = end + zeros + len(chunk) - len(chunk.lstrip(b"\0"))
            raise InputError(
                f"truncated tar: unreadable data at byte {at} after the member ending at byte {end}; the members "
                "after it cannot be read",
                path,
            )
        zeros += len(chunk)
    if zeros < END_OF_ARCHIVE_BYTES:
        raise InputError(
            f"truncated tar: it ends at byte {size} without the two zero end-of-archive blocks; members may be lost",
            path,
        )


@dataclass(slots=True)
class TarMember:
    """One regular-file member as its header describes it."""

    name: str
    key: str
    row: int
    offset: int  # of its data in the file
    size: int
    refusal: str | None = None  # why its data must not be read at all (over-size, sparse)
    duplicate: bool = False  # another member has the same name
    detached: bool = False  # in a later run of its sample's members (the sample is split across the tar)


@dataclass
class TarPlan:
    """Every member of a tar, by row, from its headers: what the data pass reads, and what it must refuse."""

    members: list[TarMember]
    by_row: dict[int, list[int]]  # row -> member indexes in tar order; rows in order of first appearance
    problems: dict[int, list[str]]  # row -> reasons found from the headers alone
    tar_only_keys: list[str]  # keys of rows past the sidecar's, in row order

    @property
    def sample_count(self) -> int:
        return len(self.by_row)


def plan_tar(
    archive: tarfile.TarFile, path: Path, sidecar_rows: Mapping[str, int], first_tar_row: int, max_member_bytes: int
) -> TarPlan:
    """Read every header: each member's key and row, and what makes a row errored before any data is read."""
    members: list[TarMember] = []
    by_row: dict[int, list[int]] = {}
    problems: dict[int, list[str]] = {}
    tar_rows: dict[str, int] = {}
    current_key: str | None = None
    detached = False
    split_rows: set[int] = set()
    for info in walk_tar(archive, path):
        key = member_key(info.name, sidecar_rows)
        row = sidecar_rows.get(key)
        if row is None:
            row = tar_rows.setdefault(key, first_tar_row + len(tar_rows))
        if key != current_key:
            detached = row in by_row
            if detached and row not in split_rows:
                split_rows.add(row)
                problems.setdefault(row, []).append(f"the members of sample {key!r} are not contiguous in the tar")
            current_key = key
        refusal = None
        if info.issparse():
            refusal = f"member {info.name!r} is a sparse file; not read"
        elif info.size > max_member_bytes:
            refusal = f"member {info.name!r} is {info.size} bytes, over the {max_member_bytes}-byte limit; not read"
        if refusal:
            problems.setdefault(row, []).append(refusal)
        by_row.setdefault(row, []).append(len(members))
        members.append(TarMember(info.name, key, row, info.offset_data, info.size, refusal, False, detached))
    counts = Counter(m.name for m in members)
    reported: set[str] = set()
    for member in members:
        if counts[member.name] > 1:
            member.duplicate = True
            if member.name not in reported:
                reported.add(member.name)
                problems.setdefault(member.row, []).append(
                    f"member name {member.name!r} appears {counts[member.name]} times in the tar"
                )
    return TarPlan(members, by_row, problems, list(tar_rows))


def _open_tar(path: Path) -> tuple[BinaryIO, tarfile.TarFile]:
    """The shard's file and its archive over it (the data pass reads members by offset from the same file)."""
    try:
        handle = open_binary(path)  # the caller closes it, after the archive
    except OSError as exc:
        raise InputError(f"unreadable tar: {exc.strerror or exc}", path) from exc
    try:
        return handle, tarfile.open(fileobj=handle, mode="r:", tarinfo=FastTarInfo)
    except TAR_ERRORS as exc:
        handle.close()
        raise InputError(f"truncated or unreadable tar: {exc}", path) from exc


def count_tar_samples(path: Path) -> int | None:
    """Distinct sample keys in the headers readable before any damage (to count the rows of a failed shard)."""
    keys: set[str] = set()
    last_header = -1
    try:
        with open_binary(path) as handle, tarfile.open(fileobj=handle, mode="r:", tarinfo=FastTarInfo) as archive:
            for member in archive:
                archive.members = []
                if member.offset <= last_header:
                    break  # a header pointing backwards (see walk_tar)
                last_header = member.offset
                if member.isfile():
                    keys.add(member_key(member.name, ()))
    except (*TAR_ERRORS, ValueError, InputError):
        pass
    return len(keys) or None


def read_schema(path: Path) -> pa.Schema:
    """A parquet file's schema (local or remote, see io/location.py)."""
    return pq.read_schema(parquet_source(path))


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A whole parquet file (a sidecar: ~10 k rows), local or remote."""
    return pq.ParquetFile(parquet_source(path)).read(columns=columns)


# --------------------------------------------------------------------------------------------------------------
# the sidecar parquet


@dataclass
class Sidecar:
    """The sidecar parquet, read whole (img2dataset writes ~10 k rows per shard), with its text columns decoded."""

    path: Path
    table: pa.Table
    cmap: ColumnMap
    keys: pa.Array
    key_to_row: dict[str, int]
    urls: pa.Array | None
    captions: pa.Array | None
    hashes: dict[str, pa.Array]
    extra: dict[str, pa.Array]
    status: pa.Array | None
    problems: np.ndarray  # object: per row, what the sidecar itself says is wrong (None where nothing)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @cached_property
    def url_values(self) -> list[str | None]:
        return self.urls.to_pylist() if self.urls is not None else []

    @cached_property
    def caption_values(self) -> list[str | None]:
        return self.captions.to_pylist() if self.captions is not None else []

    @cached_property
    def success(self) -> np.ndarray:
        if self.status is None:
            return np.zeros(self.rows, dtype=bool)
        return np.asarray(pc.fill_null(pc.equal(self.status, "success"), False))


def _status_column(table: pa.Table) -> pa.Array | None:
    """img2dataset's `status` as strings; a column of some other type says nothing about downloads."""
    if "status" not in table.column_names:
        return None
    try:
        return text_column(table["status"])[0]
    except TypeError:  # not a text type
        return None


def _note(reasons: np.ndarray, mask: np.ndarray, reason: str) -> None:
    for i in np.flatnonzero(mask):
        reasons[i] = reason if reasons[i] is None else f"{reasons[i]}; {reason}"


def _join(*reasons: str | None) -> str | None:
    present = [r for r in reasons if r]
    return "; ".join(present) if present else None


# --------------------------------------------------------------------------------------------------------------
# reading samples


@dataclass
class SampleRead:
    """One row with tar members, as the data pass read it."""

    row: int
    key: str
    images: list[bytes] = field(default_factory=list)
    url: str | None = None  # from the members, where the sidecar does not give it
    caption: str | None = None
    problems: list[str] = field(default_factory=list)
    members: list[tuple[str, int, bytes | None, bool]] = field(default_factory=list)  # name, size, digest, checked

    @property
    def image_bytes(self) -> int:
        return sum(len(image) for image in self.images)


def _read_at(handle: BinaryIO, offset: int, size: int, path: Path, name: str) -> bytes:
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"truncated tar: member {name!r} ends past the end of the file", path)
    return data


def _settle_text(
    sample: SampleRead, captions: list[tuple[str, str]], metadata: list[tuple[str, dict]], sidecar: Sidecar | None
) -> set[str]:
    """Give the row the URL and caption the matchers will see, and return the members that disagree with them.

    `.txt` and `.json` members are released beside the row, but the scan matches one URL and one caption per row:
    the sidecar's where it has them (its caption must equal every `.txt`, its URL and caption every `.json` that
    gives one), else the members' own (every `.txt` joined; the `.json` URL, which must be one). A member that
    says something else would ship text no matcher saw: it makes the row errored and is not released.
    """
    described = sidecar is not None and sample.row < sidecar.rows
    expected: dict[str, str | None] = {}
    from_sidecar = {"url": False, "caption": False}
    if described and sidecar is not None:
        if sidecar.urls is not None:
            expected["url"], from_sidecar["url"] = sidecar.url_values[sample.row], True
        if sidecar.captions is not None:
            expected["caption"], from_sidecar["caption"] = sidecar.caption_values[sample.row], True
        if sidecar.success[sample.row] and not sample.images:
            sample.problems.append(MISSING_FROM_TAR)
    if not from_sidecar["caption"]:
        texts = [text for _, text in captions]
        if not texts:
            texts = [c for _, meta in metadata if (c := _text(meta.get("caption"))) is not None][:1]
        sample.caption = expected["caption"] = "\n".join(texts) if texts else None
    if not from_sidecar["url"]:
        urls = sorted({url for _, meta in metadata if (url := _text(meta.get("url"))) is not None})
        sample.url = expected["url"] = urls[0] if urls else None
    disagreeing: set[str] = set()
    if from_sidecar["caption"]:
        for name, text in captions:
            if text != (expected["caption"] or ""):
                disagreeing.add(name)
                sample.problems.append(f"member {name!r} holds another caption than the sidecar; not released")
    for name, meta in metadata:
        for field_name, value in meta.items():
            if field_name not in expected:
                continue
            if not (value is None or _text(value) is not None) or (value or "") != (expected[field_name] or ""):
                disagreeing.add(name)
                sample.problems.append(f"member {name!r} gives another {field_name} than the row's; not released")
    return disagreeing


class _BatchBuilder:
    """Entries of complete rows: one per image member (the first also carries the row's metadata and reasons),
    or one without an image for a row that has none."""

    def __init__(self, shard: str, sidecar: Sidecar | None) -> None:
        self.shard = shard
        self.sidecar = sidecar
        self.rows: list[int] = []
        self.keys: list[str] = []
        self.sidecar_rows: list[int | None] = []
        self.urls: list[str | None] = []
        self.captions: list[str | None] = []
        self.images: list[bytes | None] = []
        self.reasons: list[str | None] = []
        self.members: list[list] = [[], [], [], [], []]
        self.image_bytes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, sample: SampleRead) -> None:
        described = self.sidecar is not None and sample.row < self.sidecar.rows
        sidecar_reason = self.sidecar.problems[sample.row] if described and self.sidecar is not None else None
        for index, image in enumerate(sample.images or [None]):
            first = index == 0
            self.rows.append(sample.row)
            self.keys.append(sample.key)
            self.sidecar_rows.append(sample.row if (first and described) else None)
            self.urls.append(sample.url if first else None)
            self.captions.append(sample.caption if first else None)
            self.images.append(image)
            self.reasons.append(_join(sidecar_reason, *sample.problems) if first else None)
        for name, size, digest, checked in sample.members:
            for column, value in zip(self.members, (sample.row, name, size, digest, checked), strict=True):
                column.append(value)
        self.image_bytes += sample.image_bytes

    def build(self) -> RowBatch:
        members = pa.Table.from_arrays(
            [pa.array(values, type=f.type) for values, f in zip(self.members, MEMBERS_SCHEMA, strict=True)],
            schema=MEMBERS_SCHEMA,
        )
        return _assemble(
            self.shard,
            self.sidecar,
            np.array(self.rows, dtype=np.int64),
            pa.array(self.keys, type=pa.string()),
            pa.array(self.sidecar_rows, type=pa.int64()),
            self.urls,
            self.captions,
            pa.array(self.images, type=pa.binary()),
            pa.array(self.reasons, type=pa.string()),
            members,
        )


def _assemble(
    shard: str,
    sidecar: Sidecar | None,
    rows: np.ndarray,
    keys: pa.Array,
    sidecar_rows: pa.Array,
    urls: list[str | None],
    captions: list[str | None],
    images: pa.Array | None,
    reasons: pa.Array,
    members: pa.Table | None,
) -> RowBatch:
    """A RowBatch whose sidecar columns are taken at `sidecar_rows` (null where an entry has no sidecar row) and
    whose URL and caption fall back to what the members gave."""

    def text(column: pa.Array | None, own: list[str | None]) -> pa.Array:
        if column is None:
            return pa.array(own, type=pa.string())
        return pc.coalesce(column.take(sidecar_rows), pa.array(own, type=column.type))

    return RowBatch(
        shard=shard,
        rows=rows,
        keys=keys,
        urls=text(sidecar.urls if sidecar else None, urls),
        captions=text(sidecar.captions if sidecar else None, captions),
        images=images,
        read_errors=reasons,
        metadata_hashes={a: c.take(sidecar_rows) for a, c in sidecar.hashes.items()} if sidecar else {},
        extra={n: c.take(sidecar_rows) for n, c in sidecar.extra.items()} if sidecar else {},
        members=members,
    )


# --------------------------------------------------------------------------------------------------------------
# the format


@dataclass
class TarWriteResult(ShardWriteResult):
    """`members_withheld`: members of kept rows not copied because the scan could not check them."""

    members_withheld: int = 0


class WebDatasetShards(DatasetFormat):
    name: ClassVar[str] = "webdataset"

    def shards(self) -> list[ShardRef]:
        return self.shard_refs(".tar")

    @staticmethod
    def sidecar(shard: ShardRef) -> Path:
        return shard.path.with_suffix(".parquet")

    @staticmethod
    def _has_sidecar(shard: ShardRef) -> bool:
        path = WebDatasetShards.sidecar(shard)
        return path.exists() or path.is_symlink()  # a dangling link is an unreadable sidecar, not an absent one

    def shard_files(self, shard: ShardRef) -> list[Path]:
        return [shard.path, self.sidecar(shard)] if self._has_sidecar(shard) else [shard.path]

    def _sidecar_columns(self, path: Path, schema: pa.Schema) -> ColumnMap:
        """Column roles of a sidecar; ColumnError for a requested column that is missing or of the wrong type."""
        cmap = resolve_columns(schema.names, self.columns, str(path), _binary_columns(schema))
        check_column_types(schema, cmap, path)
        return cmap

    def check(self) -> dict[str, object]:
        """Columns of the first sidecar that reads; shards with unreadable sidecars fail on their own later."""
        shards = self.shards()
        if not shards:
            raise InputError("no .tar shards found", self.root)
        for shard in shards:
            if not self._has_sidecar(shard):
                continue
            try:
                schema = read_schema(self.sidecar(shard))
            except PARQUET_ERRORS:
                continue
            cmap = self._sidecar_columns(self.sidecar(shard), schema)
            return {
                "has_urls": cmap.url is not None,
                "has_captions": cmap.caption is not None,
                "has_images": True,
                "metadata_hashes": sorted(cmap.hashes),
                "columns": cmap,
            }
        if self.columns.extra_cols:
            raise ColumnError(f"{shards[0].path} (no readable sidecar parquet)", self.columns.extra_cols[0], [])
        return {"has_urls": True, "has_captions": True, "has_images": True, "metadata_hashes": []}

    def _load_sidecar(self, shard: ShardRef) -> Sidecar | None:
        """The shard's sidecar, or None when it has none; any damage fails the shard (InputError naming it)."""
        if not self._has_sidecar(shard):
            return None
        path = self.sidecar(shard)
        try:
            schema = read_schema(path)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable sidecar parquet: {exc}", path) from exc
        try:
            cmap = self._sidecar_columns(path, schema)
        except ColumnError as exc:
            raise InputError(str(exc).removeprefix(f"{path}: "), path) from exc
        if cmap.key is None:
            raise InputError("sidecar parquet has no 'key' column to join with the tar", path)
        # Image bytes in a sidecar are not read: the tar's members are the images.
        columns = [c for c in cmap.needed() if c != cmap.image]
        if "status" in schema.names and "status" not in columns:
            columns.append("status")
        try:
            table = read_table(path, columns=columns)
            n = table.num_rows
            reasons = np.full(n, None, dtype=object)

            def text(column: str, *, escape: bool = False) -> tuple[pa.Array, np.ndarray]:
                values, invalid = text_column(table[column], escape_invalid=escape)
                if invalid is None:
                    return values, np.zeros(n, dtype=bool)
                _note(reasons, invalid, f"invalid UTF-8 in sidecar column {column!r}")
                return values, invalid

            # A key that is not UTF-8 still names its row (`\xNN` escapes) but joins no member.
            keys, invalid_keys = text(cmap.key, escape=True)
            urls = text(cmap.url)[0] if cmap.url else None
            captions = text(cmap.caption)[0] if cmap.caption else None
            hashes = {algo: text(name)[0] for algo, name in cmap.hashes.items()}
            extra = {name: table[name].combine_chunks() for name in cmap.extra}
            status = _status_column(table)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable sidecar parquet: {exc}", path) from exc
        key_to_row: dict[str, int] = {}
        duplicated = np.zeros(n, dtype=bool)
        for row, key in enumerate(keys.to_pylist()):
            if key is None or invalid_keys[row]:
                continue
            first = key_to_row.setdefault(key, row)
            if first != row:
                duplicated[[first, row]] = True
        _note(reasons, duplicated, "its key appears in more than one sidecar row")
        return Sidecar(path, table, cmap, keys, key_to_row, urls, captions, hashes, extra, status, reasons)

    def _read_sidecar(self, shard: ShardRef) -> tuple[pa.Table, ColumnMap] | None:
        """(table, column roles) of the sidecar, for the embedding reader (io/embeddings.py)."""
        sidecar = self._load_sidecar(shard)
        return None if sidecar is None else (sidecar.table, sidecar.cmap)

    def known_row_count(self, shard: ShardRef) -> int | None:
        """The best count of a shard's rows that survives damage: the sidecar's row count; else, when the sidecar
        is unreadable, its `_stats.json` count; else, with no sidecar, the larger of the stats' successes and the
        samples in the tar headers that still read."""
        stats = read_stats(stats_path_for(shard.path))
        if self._has_sidecar(shard):
            try:
                return pq.ParquetFile(parquet_source(self.sidecar(shard))).metadata.num_rows
            except PARQUET_ERRORS:
                count = stats_count(stats, "count")
                return count if count is not None else count_tar_samples(shard.path)
        counts = [c for c in (stats_count(stats, "successes"), count_tar_samples(shard.path)) if c is not None]
        return max(counts) if counts else None

    def _check_counts(self, shard: ShardRef, plan: TarPlan) -> None:
        """Samples missing against the shard's own stats (a tar cut at a member boundary and closed again) fail
        it, rather than vanishing."""
        stats_path = stats_path_for(shard.path)
        stats = read_stats(stats_path)
        successes = stats_count(stats, "successes")
        if successes is not None and plan.sample_count < successes:
            raise InputError(
                f"truncated tar: it holds {plan.sample_count} samples, but {stats_path.name} counts {successes} "
                "successful downloads",
                shard.path,
            )

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        sidecar = self._load_sidecar(shard)
        n_meta = sidecar.rows if sidecar is not None else 0
        handle, archive = _open_tar(shard.path)
        with handle, archive:
            plan = plan_tar(archive, shard.path, sidecar.key_to_row if sidecar else {}, n_meta, self.max_member_bytes)
            self._check_counts(shard, plan)
            if read_images:
                yield from self._sample_batches(shard, handle, plan, sidecar, batch_rows)
            else:
                yield from self._metadata_batches(shard, plan, sidecar, batch_rows)

    def _sample_batches(
        self, shard: ShardRef, handle: BinaryIO, plan: TarPlan, sidecar: Sidecar | None, batch_rows: int
    ) -> Iterator[RowBatch]:
        builder = _BatchBuilder(shard.id, sidecar)
        for row, indexes in plan.by_row.items():
            members = [plan.members[i] for i in indexes]
            builder.add(self._read_sample(shard.path, handle, row, members, plan.problems.get(row, []), sidecar))
            if len(builder) >= batch_rows or builder.image_bytes >= BATCH_IMAGE_BYTES:
                yield builder.build()
                builder = _BatchBuilder(shard.id, sidecar)
        if len(builder):
            yield builder.build()
        if sidecar is None:
            return
        # Sidecar rows with no member in the tar: failed downloads, and rows whose image is missing.
        in_tar = np.zeros(sidecar.rows, dtype=bool)
        in_tar[[row for row in plan.by_row if row < sidecar.rows]] = True
        reasons = sidecar.problems.copy()
        _note(reasons, sidecar.success & ~in_tar, MISSING_FROM_TAR)
        missing = np.flatnonzero(~in_tar)
        for lo in range(0, len(missing), batch_rows):
            rows = missing[lo : lo + batch_rows]
            yield self._sidecar_rows_batch(shard, sidecar, rows, reasons[rows], MEMBERS_SCHEMA.empty_table())

    def _read_sample(
        self,
        path: Path,
        handle: BinaryIO,
        row: int,
        members: list[TarMember],
        problems: list[str],
        sidecar: Sidecar | None,
    ) -> SampleRead:
        """Read and classify a row's members: images for hashing, captions and metadata parsed and compared with
        the sidecar. Over-size and sparse members are not read; duplicates and detached members are read (their
        images are still matched) but never listed as checked."""
        sample = SampleRead(row, members[0].key, problems=list(problems))
        captions: list[tuple[str, str]] = []
        metadata: list[tuple[str, dict]] = []
        spent = 0
        for member in members:
            if member.refusal is not None:
                sample.members.append((member.name, member.size, None, False))
                continue
            if spent + member.size > self.max_member_bytes:
                sample.problems.append(
                    f"sample {sample.key!r} holds over {self.max_member_bytes} bytes; member {member.name!r} not read"
                )
                sample.members.append((member.name, member.size, None, False))
                continue
            spent += member.size
            data = _read_at(handle, member.offset, member.size, path, member.name)
            content = classify_member(member.name, member_extension(member.name, member.key), data)
            problem = content.problem
            if content.kind == IMAGE:
                if len(sample.images) < MAX_IMAGES_PER_SAMPLE:
                    sample.images.append(data)
                else:
                    problem = (
                        f"sample {sample.key!r} holds over {MAX_IMAGES_PER_SAMPLE} images; {member.name!r} not read"
                    )
            elif problem is None and content.kind == CAPTION:
                captions.append((member.name, str(content.value)))
            elif problem is None and content.kind == METADATA:
                metadata.append((member.name, content.value))  # type: ignore[arg-type]
            if problem is not None:
                sample.problems.append(problem)
            checked = problem is None and not member.duplicate and not member.detached
            sample.members.append((member.name, member.size, xxhash.xxh3_128_digest(data), checked))
        disagreeing = _settle_text(sample, captions, metadata, sidecar)
        if disagreeing:
            sample.members = [(n, size, d, c and n not in disagreeing) for n, size, d, c in sample.members]
        return sample

    def _metadata_batches(
        self, shard: ShardRef, plan: TarPlan, sidecar: Sidecar | None, batch_rows: int
    ) -> Iterator[RowBatch]:
        """Sidecar rows as they are, and tar-only samples as errored rows: no member data is read."""
        if sidecar is not None:
            in_tar = np.zeros(sidecar.rows, dtype=bool)
            in_tar[[row for row in plan.by_row if row < sidecar.rows]] = True
            reasons = sidecar.problems.copy()
            _note(reasons, sidecar.success & ~in_tar, MISSING_FROM_TAR)
            for row, found in plan.problems.items():
                if row < sidecar.rows:
                    reasons[row] = _join(reasons[row], *found)
            for lo in range(0, sidecar.rows, batch_rows):
                rows = np.arange(lo, min(lo + batch_rows, sidecar.rows), dtype=np.int64)
                yield self._sidecar_rows_batch(shard, sidecar, rows, reasons[rows], None)
        n_meta = sidecar.rows if sidecar is not None else 0
        keys = plan.tar_only_keys
        for lo in range(0, len(keys), batch_rows):
            part = keys[lo : lo + batch_rows]
            n = len(part)
            reasons = [_join(NOT_CHECKED_BY_METADATA_SCAN, *plan.problems.get(n_meta + lo + i, [])) for i in range(n)]
            yield _assemble(
                shard.id,
                sidecar,
                np.arange(n_meta + lo, n_meta + lo + n, dtype=np.int64),
                pa.array(part, type=pa.string()),
                pa.nulls(n, pa.int64()),
                [None] * n,
                [None] * n,
                None,
                pa.array(reasons, type=pa.string()),
                None,
            )

    @staticmethod
    def _sidecar_rows_batch(
        shard: ShardRef, sidecar: Sidecar, rows: np.ndarray, reasons: np.ndarray, members: pa.Table | None
    ) -> RowBatch:
        index = pa.array(rows, type=pa.int64())
        n = len(rows)
        return _assemble(
            shard.id,
            sidecar,
            rows.astype(np.int64),
            sidecar.keys.take(index),
            index,
            [None] * n,
            [None] * n,
            None,
            pa.array(reasons.tolist(), type=pa.string()),
            members,
        )

    def write_shard(
        self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path, members: pa.Table | None = None
    ) -> TarWriteResult:
        """Copy the shard without the dropped rows: of the tar, only members `members` lists as checked (each
        re-hashed as it is copied and compared with the scan's digest); of the sidecar, the kept rows.

        Member headers are written afresh (name, size, mode, mtime): nothing of the source's headers (owner names,
        PAX records) that the scan did not check reaches the release. A tar member the scan did not list, or a
        listed one that is gone or differs, raises InputError: the shard changed since the scan.
        """
        drop = np.unique(np.asarray(drop_rows, dtype=np.int64))
        dropped = set(drop.tolist())
        files: list[str] = []
        kept_meta: pa.Table | None = None
        success: np.ndarray | None = None  # per sidecar row
        n_meta = 0
        sidecar_path = self.sidecar(shard)
        if self._has_sidecar(shard):
            try:
                table = read_table(sidecar_path)
            except PARQUET_ERRORS as exc:
                raise InputError(f"unreadable sidecar parquet: {exc}", sidecar_path) from exc
            n_meta = table.num_rows
            keep = np.ones(n_meta, dtype=bool)
            keep[drop[(drop >= 0) & (drop < n_meta)]] = False
            kept_meta = table.filter(pa.array(keep))
            status = _status_column(table)
            if status is not None:
                success = np.asarray(pc.fill_null(pc.equal(status, "success"), False))
        listing = _MemberListing(members, shard.path) if members is not None else None
        withheld = 0
        with_samples: set[int] = set()  # rows with a member in the release
        handle, source = _open_tar(shard.path)
        tar_target = self.relative_out(shard, out_root, shard.path)
        with handle, source, atomic_path(tar_target) as tmp:
            with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as target:
                for info in walk_tar(source, shard.path):
                    if listing is None:
                        raise InputError(
                            "the scan did not read this shard's members (a metadata-only scan); nothing of it is "
                            "released unchecked",
                            shard.path,
                        )
                    row, digest, checked = listing.take(info)
                    if row in dropped:
                        continue  # a dropped row's bytes are never read
                    if not checked or digest is None:
                        withheld += 1
                        continue
                    _copy_verified(source, info, target, digest, shard.path)
                    with_samples.add(row)
            if listing is not None:
                listing.check_exhausted()
        files.append(tar_target.relative_to(out_root).as_posix())
        tar_rows = 0
        if members is not None and members.num_rows:
            member_rows = np.unique(np.asarray(members.column("row").to_numpy(zero_copy_only=False), dtype=np.int64))
            tar_rows = int(np.setdiff1d(member_rows[member_rows >= n_meta], drop).size)
        written = tar_rows + (kept_meta.num_rows if kept_meta is not None else 0)
        if kept_meta is not None:
            meta_target = self.relative_out(shard, out_root, sidecar_path)
            with atomic_path(meta_target) as tmp:
                pq.write_table(kept_meta, tmp)
            files.append(meta_target.relative_to(out_root).as_posix())
        # Successes are the rows whose sample the cleaned tar still holds, so that reading the release back finds
        # as many samples as its stats count (a kept errored row may have had every member withheld).
        if kept_meta is None:
            successes: int | None = len(with_samples)
        elif success is not None:
            successes = sum(1 for row in with_samples if row < n_meta and success[row])
        else:
            successes = None
        stats_target = stats_path_for(tar_target)
        if write_cleaned_stats(stats_path_for(shard.path), stats_target, kept_meta, written, successes):
            files.append(stats_target.relative_to(out_root).as_posix())
        return TarWriteResult(rows_written=written, files=files, members_withheld=withheld)


class _MemberListing:
    """The scan's members table, matched to the tar's members by name and, for repeated names, by order."""

    def __init__(self, members: pa.Table, path: Path) -> None:
        self.path = path
        self.rows = members.column("row").to_pylist()
        self.sizes = members.column("size").to_pylist()
        self.digests = members.column("digest").to_pylist()
        self.checked = members.column("checked").to_pylist()
        self.names = members.column("name").to_pylist()
        self.by_name: dict[str, deque[int]] = {}
        for index, name in enumerate(self.names):
            self.by_name.setdefault(name, deque()).append(index)

    def take(self, info: tarfile.TarInfo) -> tuple[int, bytes | None, bool]:
        """(row, digest, checked) of the next listed member with this name."""
        queue = self.by_name.get(info.name)
        if not queue:
            raise InputError(
                f"tar member {info.name!r} was not seen by the scan; the shard changed since the scan", self.path
            )
        index = queue.popleft()
        if self.sizes[index] != info.size:
            raise InputError(
                f"tar member {info.name!r} is {info.size} bytes, the scan read {self.sizes[index]}; the shard changed "
                "since the scan",
                self.path,
            )
        return self.rows[index], self.digests[index], bool(self.checked[index])

    def check_exhausted(self) -> None:
        for name, queue in self.by_name.items():
            if queue:
                raise InputError(
                    f"tar member {name!r} that the scan read is no longer in the tar; the shard changed since the scan",
                    self.path,
                )


class _VerifyingReader:
    """Reads a member for tarfile to copy, hashing it on the way; a short read is the source's fault (InputError),
    kept apart from errors writing the release (a full disk must not be blamed on the input)."""

    def __init__(self, source: BinaryIO, size: int, path: Path, name: str) -> None:
        self.source, self.remaining, self.path, self.name = source, size, path, name
        self.hasher = xxhash.xxh3_128()

    def read(self, size: int = -1) -> bytes:
        wanted = self.remaining if size < 0 else min(size, self.remaining)
        try:
            data = self.source.read(wanted)
        except TAR_ERRORS as exc:
            raise InputError(f"tar member {self.name!r} cannot be read: {exc}", self.path) from exc
        if len(data) < wanted:
            raise InputError(f"truncated tar: member {self.name!r} ends past the end of the file", self.path)
        self.remaining -= len(data)
        self.hasher.update(data)
        return data


def _release_info(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A fresh header for a released member: its name, size, permission bits and mtime, nothing else."""
    info = tarfile.TarInfo(member.name)
    info.size = member.size
    info.mode = member.mode & 0o777
    info.mtime = int(member.mtime) if isinstance(member.mtime, int | float) and math.isfinite(member.mtime) else 0
    return info


def _copy_verified(
    source: tarfile.TarFile, member: tarfile.TarInfo, target: tarfile.TarFile, digest: bytes, path: Path
) -> None:
    extracted = source.extractfile(member)
    if extracted is None:  # walk_tar yields regular files only
        raise InputError(f"tar member {member.name!r} has no data", path)
    reader = _VerifyingReader(extracted, member.size, path, member.name)  # type: ignore[arg-type]
    target.addfile(_release_info(member), reader)  # type: ignore[arg-type]
    if reader.hasher.digest() != digest:
        raise InputError(
            f"tar member {member.name!r} changed since the scan (its xxh3-128 differs); shard refused", path
        )
