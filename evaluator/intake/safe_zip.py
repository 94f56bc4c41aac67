"""Reading a submitted `.zip` without trusting it: nothing is extracted, every size is capped.

Checks, each reported as a `RunIssue` naming the member:
- before `zipfile` parses anything, the end-of-central-directory record (zip64 included) is read by hand and
  the declared member count and central-directory size are capped, so a huge directory is never loaded;
- member names: absolute (`/x`, `C:x`), `..` or `.` components, empty components, backslashes, NUL bytes,
  non-ASCII names not flagged UTF-8 (garbled by cp437 decoding);
- member kinds: symbolic links and other non-regular Unix types (from `external_attr`), encrypted members;
- duplicate member names;
- sizes: a member's declared size over `max_file_bytes`, the declared total over `max_total_bytes`, and the
  zip-bomb ratio (declared uncompressed / compressed over `max_ratio`, for members above `ratio_floor_bytes`).
`read_member` then reads at most the cap, counting bytes as they come (zipfile itself stops at the declared size
and checks the CRC), so a member that lies about its size fails instead of filling memory.
"""

from __future__ import annotations

import lzma
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from evaluator.common.errors import IntakeError
from evaluator.common.text import show_name
from evaluator.contracts.run_folder import Limits, RunIssue

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CD_BYTES_PER_MEMBER = 1024  # generous: a central-directory entry is 46 bytes + name + extra fields
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_UNIX = 3
_DRIVE = re.compile(r"^[A-Za-z]:")
_REMAKE = "re-create the zip from the run folder (e.g. `cd runs && zip -r RUN.zip RUN`)"


class _BadZip(ValueError):
    """The end records of an archive contradict each other (raised by `_declared_counts`)."""


class ZipReadError(IntakeError, ValueError):
    """A member could not be read safely; the message names the member and the reason."""


@dataclass(frozen=True)
class ZipEntry:
    """A member that passed the name, kind and size checks: `name` is its archive name, `is_dir` from the name."""

    name: str
    is_dir: bool
    size: int


def _declared_counts(fp: BinaryIO) -> tuple[int, int] | None:
    """(member count, central directory bytes) from the end record, zip64 aware; None when there is none."""
    fp.seek(0, 2)
    size = fp.tell()
    tail_len = min(size, 22 + 65535)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0 or pos + 22 > len(tail):
        return None
    _, _, _, _, n_total, cd_size, cd_offset, _ = struct.unpack("<4s4H2LH", tail[pos:pos + 22])
    loc = pos - 20
    if loc >= 0 and tail[loc:loc + 4] == _EOCD64_LOCATOR:
        # zipfile (CPython 3.11 _EndRecData64) uses a zip64 record whenever a locator precedes the end record,
        # whatever the 16/32-bit fields say, and reads it 56 bytes before the locator: check that same record.
        rec_at = size - tail_len + loc - 56
        if rec_at < 0:
            raise _BadZip("has a zip64 locator with no zip64 record before it")
        fp.seek(rec_at)
        rec = fp.read(56)
        if len(rec) != 56 or rec[:4] != _EOCD64:
            raise _BadZip("has a zip64 locator that does not point at a zip64 end record")
        _, _, z64_offset, _ = struct.unpack("<4sLQL", tail[loc:loc + 20])
        if z64_offset != rec_at:
            raise _BadZip("has a zip64 locator whose offset disagrees with its record (a crafted archive)")
        z_total, z_cd = struct.unpack("<QQ", rec[32:48])
        n_total, cd_size = max(n_total, z_total), max(cd_size, z_cd)
    return n_total, cd_size


def _name_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this member name is unsafe or unusable, or None."""
    name = info.orig_filename
    if "\x00" in name:
        return "has a NUL byte in its name"
    if "\\" in name:
        return "has a backslash in its name (a Windows path separator or an escape trick)"
    if name.startswith("/") or _DRIVE.match(name):
        return "has an absolute path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "has a '..' component: it points outside the run"
    if "." in parts or "" in parts:
        return "has an empty or '.' path component"
    if not info.flag_bits & _FLAG_UTF8 and not name.isascii():
        return "has a non-ASCII name that the zip does not mark as UTF-8"
    return None


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & _FLAG_ENCRYPTED:
        return "is encrypted"
    mode = info.external_attr >> 16
    if info.create_system == _UNIX and stat.S_IFMT(mode):  # type bits 0: no type recorded (Python's writestr)
        if stat.S_ISLNK(mode):
            return "is a symbolic link (links are never followed)"
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"is not a regular file (Unix type {stat.S_IFMT(mode):o})"
    return None


def _size_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    if info.file_size > limits.max_file_bytes:
        return f"declares {info.file_size} bytes uncompressed, over the limit of {limits.max_file_bytes} per file"
    if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return (f"expands {ratio:.0f}x ({info.compress_size} -> {info.file_size} bytes), over the limit of "
                f"{limits.max_ratio:.0f}x (a zip bomb)")
    return None


def open_checked(path: Path, fp: BinaryIO, limits: Limits) -> tuple[zipfile.ZipFile | None, list[ZipEntry], list[RunIssue]]:
    """Open `fp` (the zip at `path`) as a zip after the end-record caps; return it with its safe members and issues.

    The returned ZipFile is None when the archive as a whole is refused; the caller closes `fp`.
    """
    label = path.name
    try:
        counts = _declared_counts(fp)
    except _BadZip as exc:
        return None, [], [RunIssue(label, str(exc), _REMAKE)]
    if counts is None:
        return None, [], [RunIssue(label, "is not a zip archive (no end-of-central-directory record)", _REMAKE)]
    n_members, cd_size = counts
    if n_members > limits.max_members:
        return None, [], [RunIssue(label, f"declares {n_members} members, over the limit of {limits.max_members}",
                                   "submit only the run's images and run.json")]
    if cd_size > max(limits.max_members, 1) * _CD_BYTES_PER_MEMBER:
        return None, [], [RunIssue(label, f"has a {cd_size}-byte central directory, too large for "
                                   f"{limits.max_members} members", _REMAKE)]
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error,
            UnicodeDecodeError, NotImplementedError) as exc:
        return None, [], [RunIssue(label, f"is not a readable zip archive ({exc})", _REMAKE)]
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        zf.close()
        return None, [], [RunIssue(label, f"holds {len(infos)} members, over the limit of {limits.max_members}",
                                   "submit only the run's images and run.json")]
    issues: list[RunIssue] = []
    counts_by_name = Counter(i.orig_filename for i in infos)
    for name, n in sorted(counts_by_name.items()):
        if n > 1:
            issues.append(RunIssue(show_name(name), f"appears {n} times in the zip (duplicate member name)", _REMAKE))
    entries: list[ZipEntry] = []
    total = 0
    for info in infos:
        shown = show_name(info.orig_filename)
        if counts_by_name[info.orig_filename] > 1:
            continue
        problem = _name_problem(info) or _kind_problem(info)
        if problem is None and not info.is_dir():
            problem = _size_problem(info, limits)
        if problem is not None:
            issues.append(RunIssue(shown, problem, "remove it from the zip; " + _REMAKE))
            continue
        total += info.file_size
        entries.append(ZipEntry(info.orig_filename, info.is_dir(), info.file_size))
    if total > limits.max_total_bytes:
        issues.append(RunIssue(label, f"declares {total} bytes uncompressed in all, over the limit of "
                               f"{limits.max_total_bytes}", "submit only the run's images and run.json"))
        zf.close()
        return None, [], issues
    return zf, entries, issues


def read_member(zf: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """Read one member into memory, at most `cap` bytes (counted while reading); ZipReadError on any failure."""
    try:
        info = zf.getinfo(name)
        if info.file_size > cap:
            raise ZipReadError(f"declares {info.file_size} bytes, over the limit of {cap}")
        chunks, n = [], 0
        with zf.open(info) as f:
            while chunk := f.read(min(1 << 20, cap + 1 - n)):
                n += len(chunk)
                if n > cap:
                    raise ZipReadError(f"holds more than {cap} bytes")
                chunks.append(chunk)
        if n != info.file_size:
            raise ZipReadError(f"holds {n} bytes but declares {info.file_size}")
        return b"".join(chunks)
    except ZipReadError:
        raise
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError, NotImplementedError,
            KeyError, ValueError, struct.error) as exc:
        raise ZipReadError(f"cannot be read from the zip ({type(exc).__name__}: {exc})") from exc
