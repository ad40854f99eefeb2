"""Uploaded label files, checked before anything is decompressed into memory, allocated or stored.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels come back as garbage), and it allocates
whatever a NIfTI or NRRD header declares before it reads a byte of data: a 352-byte header claiming a huge volume
cost the server gigabytes before any check. So a label file is read here in three steps:

1. its header alone, parsed without SimpleITK: the declared size must be the image's grid (the label must lie on it
   anyway) and the declared voxel bytes at most the server's limit (``http.max_upload_mb``);
2. its data, streamed in bounded chunks: a gzip stream must be complete (end-of-stream marker and CRC) and hold
   exactly the bytes the header declares, never more (a decompression bomb or trailing garbage) nor fewer (a
   truncated upload);
3. only then SimpleITK, on bytes known to be complete (a NIfTI is handed over decompressed).

Formats: single-file NIfTI-1 (``.nii.gz``, ``.nii``; SimpleITK reads no NIfTI-2), NRRD with raw or gzip encoding
(``.nrrd``, Slicer's ``.seg.nrrd``) and OHIF's ``.bin`` (one byte per voxel of the image's grid, x fastest; read
here onto the image's geometry, where MONAI Label's ``binary_to_image`` left a temporary file behind each time).
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.spatialimages import HeaderDataError

from hope.dicom.volume import grid_mismatch
from hope.errors import InvalidInputError, TooLargeError

#: Label file suffixes HOPE reads, longest first (``.seg.nrrd`` before ``.nrrd``).
SUFFIXES: tuple[str, ...] = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".bin")
#: Bytes read and written at a time while a label is streamed.
CHUNK = 1 << 20
#: Largest NIfTI header with extensions, or NRRD header, accepted.
MAX_HEADER_BYTES = 1 << 20
NIFTI1_HEADER_BYTES = 348
_GZIP_MAGIC = b"\x1f\x8b"
_FORMATS = "NIfTI (.nii.gz, .nii), NRRD (.nrrd, .seg.nrrd) or OHIF .bin"
_NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_ITEMSIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}


def label_suffix(filename: str) -> str:
    """The label format suffix of an uploaded file's name (one of :data:`SUFFIXES`).

    Raises:
        InvalidInputError: the name ends in none of them.
    """
    lowered = filename.lower()
    for suffix in SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    raise InvalidInputError(f"label file {filename[:80]!r} has an unknown format; send {_FORMATS}")


def read_label_file(path: Path, image: sitk.Image, image_id: str, max_bytes: int, work_dir: Path) -> sitk.Image:
    """The label volume in ``path``, read only after its header and data were checked against ``image``'s grid.

    Args:
        path: the uploaded file; its name ends in one of :data:`SUFFIXES`.
        image: the image the label is drawn on; the label's declared size must be its size.
        image_id: the image's series UID, named in errors.
        max_bytes: the most bytes accepted, for the file and for its decompressed voxels.
        work_dir: an empty folder for the decompressed copy of a NIfTI; the caller removes it.

    Raises:
        InvalidInputError: unknown format, corrupt or truncated file, more data than declared, not on the grid.
        TooLargeError: the file, or the voxel data it declares, is larger than ``max_bytes``.
    """
    suffix = label_suffix(path.name)
    size = path.stat().st_size
    if size > max_bytes:
        raise TooLargeError(f"the label file has {_mb(size)}, more than the {_mb(max_bytes)} this server accepts "
                            "(http.max_upload_mb in server.yaml); send the label alone, on the image's grid")
    check = _Check(image, image_id, max_bytes)
    if suffix == ".bin":
        return check.binary(path)
    readable = check.nifti(path, work_dir) if suffix in (".nii", ".nii.gz") else check.nrrd(path)
    try:
        return sitk.ReadImage(str(readable))
    except RuntimeError as exc:
        raise InvalidInputError(f"cannot read the label file ({_first_line(exc)}); send {_FORMATS}") from exc


def read_label_on_grid(path: Path, image: sitk.Image, image_id: str, max_bytes: int, work_dir: Path) -> sitk.Image:
    """The label volume in ``path``, read as :func:`read_label_file` reads it, and known to lie on ``image``'s grid.

    Beyond :func:`read_label_file`'s checks, the label has one value per voxel, and ``image``'s spacing, origin and
    direction. Its values are not checked: they are the caller's (final labels, scribbles, a lesion).

    Raises:
        InvalidInputError: as :func:`read_label_file`; or the label has several values per voxel, or it lies
            elsewhere than ``image``.
        TooLargeError: as :func:`read_label_file`.
    """
    label = read_label_file(path, image, image_id, max_bytes, work_dir)
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"the label has {label.GetNumberOfComponentsPerPixel()} values per voxel; "
                                "send one label value per voxel")
    reason = grid_mismatch(image, label)
    if reason:
        raise InvalidInputError(f"label does not lie on the grid of series {image_id}: {reason}")
    return label


class _Check:
    """The checks of one label file against one image's grid."""

    def __init__(self, image: sitk.Image, image_id: str, max_bytes: int) -> None:
        self.image = image
        self.grid = tuple(int(n) for n in image.GetSize())
        self.image_id = image_id
        self.max_bytes = max_bytes

    def declared(self, sizes: Sequence[int], itemsize: int, what: str) -> int:
        """Voxel bytes of a volume of ``sizes`` (x fastest), once it is known to lie on the grid and to fit."""
        sizes = tuple(int(n) for n in sizes)
        spatial = sizes[:3] + (1,) * (3 - len(sizes[:3]))
        if any(n < 1 for n in sizes) or any(n != 1 for n in sizes[3:]) or spatial != self.grid:
            raise InvalidInputError(
                f"label does not lie on the grid of series {self.image_id}: its {what} declares size {sizes}, "
                f"the image is {self.grid} (x, y, z voxels); save one label volume on the image's grid"
            )
        nbytes = math.prod(sizes) * itemsize
        if nbytes > self.max_bytes:
            raise TooLargeError(f"the label declares {_mb(nbytes)} of voxels, more than the {_mb(self.max_bytes)} "
                                "this server accepts (http.max_upload_mb in server.yaml); save it as 8-bit integers")
        return nbytes

    def binary(self, path: Path) -> sitk.Image:
        """OHIF's ``.bin``: one uint8 per voxel of the grid, x fastest, on the image's geometry."""
        expected = math.prod(self.grid)
        size = path.stat().st_size
        if size != expected:
            raise InvalidInputError(
                f"the .bin label has {size} bytes, but the grid of series {self.image_id} has {expected} voxels "
                f"{self.grid} (x, y, z) of one byte each; export the label on the image's grid"
            )
        label = sitk.GetImageFromArray(np.fromfile(path, dtype=np.uint8).reshape(self.grid[::-1]))
        label.CopyInformation(self.image)
        return label

    def nifti(self, path: Path, work_dir: Path) -> Path:
        """A checked single-file NIfTI: ``path`` itself, or its gzip stream decompressed into ``work_dir``."""
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with _complete_stream():
                header_bytes = _read_exactly(stream, NIFTI1_HEADER_BYTES, "NIfTI header")
                shape, itemsize, offset = _nifti_layout(header_bytes)
                nbytes = self.declared(shape, itemsize, "NIfTI header")
                if not compressed:
                    _check_length(path.stat().st_size - offset, nbytes, "NIfTI file")
                    return path
                plain = work_dir / "label.nii"
                with plain.open("wb") as out:
                    out.write(header_bytes)
                    needed = offset - len(header_bytes) + nbytes
                    _check_length(_copy(stream, out, needed + 1), nbytes, "NIfTI file", offset=needed - nbytes)
        return plain

    def nrrd(self, path: Path) -> Path:
        """A checked NRRD (raw or gzip encoding, data in the same file), left for SimpleITK to read."""
        with path.open("rb") as raw:
            fields, data_start = _nrrd_header(raw.read(MAX_HEADER_BYTES))
            if fields.get("data file") or fields.get("datafile"):
                raise InvalidInputError("the NRRD label names a detached data file; save it as one .nrrd file")
            if any(fields.get(skip, "0").strip() != "0" for skip in ("byte skip", "byteskip", "line skip",
                                                                      "lineskip")):
                raise InvalidInputError("the NRRD label skips bytes or lines before its data; save it without")
            itemsize = _NRRD_ITEMSIZE.get(fields.get("type", "").lower())
            if itemsize is None:
                raise InvalidInputError(f"the NRRD label has voxel type {fields.get('type')!r}; save it as integers")
            try:
                sizes = [int(n) for n in fields.get("sizes", "").split()]
            except ValueError:
                raise InvalidInputError(f"the NRRD label's sizes {fields.get('sizes')!r} are not integers") from None
            nbytes = self.declared(sizes, itemsize, "NRRD header")
            encoding = fields.get("encoding", "").lower()
            if encoding == "raw":
                _check_length(path.stat().st_size - data_start, nbytes, "NRRD file")
            elif encoding in ("gzip", "gz"):
                raw.seek(data_start)
                with _complete_stream():
                    _check_length(_copy(gzip.GzipFile(fileobj=raw, mode="rb"), None, nbytes + 1), nbytes,
                                  "NRRD file")
            else:
                raise InvalidInputError(f"the NRRD label has encoding {encoding!r}; save it raw or gzip-compressed")
        return path


@contextmanager
def _complete_stream() -> Iterator[None]:
    """Turn the errors of a gzip stream that is cut short or corrupt into an :class:`InvalidInputError`."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInputError(
            f"the label's gzip stream is truncated or corrupt ({exc}); the upload was cut short or damaged, "
            "send the complete file again"
        ) from exc


def _read_exactly(stream: BinaryIO, count: int, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise InvalidInputError(f"the label file ends inside its {what} ({len(data)} of {count} bytes): it is "
                                "truncated or not a label file; send the complete file again")
    return data


def _copy(stream: BinaryIO, out: BinaryIO | None, limit: int) -> int:
    """Copy ``stream`` into ``out`` (or just count it) in bounded chunks, stopping after ``limit`` bytes."""
    copied = 0
    while copied < limit:
        chunk = stream.read(min(CHUNK, limit - copied))
        if not chunk:
            break
        if out is not None:
            out.write(chunk)
        copied += len(chunk)
    return copied


def _check_length(found: int, expected: int, what: str, offset: int = 0) -> None:
    """Refuse voxel data of ``found`` bytes (after ``offset`` header bytes) where the header declares ``expected``."""
    found -= offset
    if found < expected:
        raise InvalidInputError(
            f"the {what} is truncated: its header declares {expected} bytes of voxels, it holds {max(found, 0)}; "
            "the upload was cut short, send the complete file again"
        )
    if found > expected:
        raise InvalidInputError(
            f"the {what} holds more data than the {expected} bytes of voxels its header declares (a corrupt file "
            "or a decompression bomb); save the label again"
        )


def _nifti_layout(header_bytes: bytes) -> tuple[tuple[int, ...], int, int]:
    """``(shape, voxel bytes, data offset)`` of a single-file NIfTI-1 header."""
    if NIFTI1_HEADER_BYTES not in {int.from_bytes(header_bytes[:4], "little"), int.from_bytes(header_bytes[:4], "big")}:
        raise InvalidInputError(f"the label file is not NIfTI-1 (SimpleITK reads no NIfTI-2); send {_FORMATS}")
    try:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(header_bytes), check=False)
        magic = header["magic"].item()
        shape, itemsize = header.get_data_shape(), header.get_data_dtype().itemsize
        offset = int(header.get_data_offset())
    except (HeaderDataError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"the label's NIfTI header is invalid ({exc}); save the label again") from exc
    if magic != b"n+1":
        raise InvalidInputError(f"the label's NIfTI header has magic {magic!r}, not a single-file NIfTI-1 (n+1); "
                                "send one .nii or .nii.gz file")
    offset = max(offset, NIFTI1_HEADER_BYTES + 4)  # the voxels follow the header and its 4 extension bytes
    if offset > MAX_HEADER_BYTES:
        raise InvalidInputError(f"the label's NIfTI header puts its voxels at byte {offset}, after more than "
                                f"{MAX_HEADER_BYTES} bytes of extensions; save the label without extensions")
    return shape, itemsize, offset


def _nrrd_header(head: bytes) -> tuple[dict[str, str], int]:
    """The fields of a NRRD header (lower-case names) and the offset of its data."""
    if not head.startswith(b"NRRD000"):
        raise InvalidInputError(f"the label file is not NRRD (it does not start with NRRD000); send {_FORMATS}")
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := head.find(sep)) >= 0]
    if not ends:
        raise InvalidInputError(f"the NRRD label's header has no end (an empty line) in its first {len(head)} "
                                "bytes: the file is truncated or not NRRD")
    end = min(ends)
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#") and not value.startswith("="):  # skip comments and key:=value pairs
            fields[name.strip().lower()] = value.strip()
    return fields, end


def _mb(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MB"


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
