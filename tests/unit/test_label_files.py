"""Uploaded label files are checked before anything is decompressed into memory, allocated or stored.

Before :mod:`hope.datastore.label_files`, the datastore handed the upload straight to SimpleITK, which reads a
truncated ``.nii.gz`` without complaint and allocates whatever a header declares before reading a byte of data.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hope.datastore import label_files
from hope.datastore.label_files import label_suffix, read_label_file
from hope.errors import InvalidInputError, TooLargeError
from tests.integration.helpers import nifti_header_only

GRID = (10, 12, 4)  # x, y, z
LIMIT = 1 << 20
UID = "1.2.3.4"


@pytest.fixture
def image() -> sitk.Image:
    """The image the labels are drawn on."""
    image = sitk.Image(*GRID, sitk.sitkInt16)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-4.0, 10.0, 3.0))
    return image


@pytest.fixture
def label(image: sitk.Image) -> sitk.Image:
    """A label on the image's grid."""
    array = np.zeros(GRID[::-1], dtype=np.uint8)
    array[1:3, 3:8, 2:6] = 2
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    return label


def _write(label: sitk.Image, path: Path, compress: bool = True) -> Path:
    sitk.WriteImage(label, str(path), useCompression=compress)
    return path


def _read(path: Path, image: sitk.Image, tmp_path: Path, limit: int = LIMIT) -> sitk.Image:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return read_label_file(path, image, UID, limit, work)


def _never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("SimpleITK was asked to read a file that failed its checks")

    monkeypatch.setattr(label_files.sitk, "ReadImage", refuse)


@pytest.mark.parametrize("name", ["label.nii.gz", "label.nii", "label.nrrd", "label.seg.nrrd"])
@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "raw"])
def test_a_complete_label_on_the_grid_is_read(
    image: sitk.Image, label: sitk.Image, tmp_path: Path, name: str, compress: bool
) -> None:
    read = _read(_write(label, tmp_path / name, compress), image, tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(label))
    assert np.allclose(read.GetSpacing(), label.GetSpacing()) and np.allclose(read.GetOrigin(), label.GetOrigin())


def test_suffixes() -> None:
    assert label_suffix("Segmentation.SEG.NRRD") == ".seg.nrrd"
    assert label_suffix("tmpx1.nii.gz") == ".nii.gz"
    assert label_suffix("label.bin") == ".bin"
    with pytest.raises(InvalidInputError, match=r"unknown format; send NIfTI \(\.nii\.gz, \.nii\), NRRD"):
        label_suffix("x.py")


@pytest.mark.parametrize("name", ["label.nii.gz", "label.nrrd"])
def test_a_truncated_gzip_stream_is_refused(
    image: sitk.Image, label: sitk.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = _write(label, tmp_path / name)
    path.write_bytes(path.read_bytes()[:-20])  # the gzip trailer (CRC, size) and the end of the deflate stream
    _never_read(monkeypatch)
    with pytest.raises(InvalidInputError, match="gzip stream is truncated or corrupt .*send the complete file again"):
        _read(path, image, tmp_path)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_fewer_voxels_than_the_header_declares_is_refused(
    image: sitk.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    data = nifti_header_only(GRID) + bytes(np.prod(GRID) - 100)
    path = tmp_path / ("label.nii.gz" if compress else "label.nii")
    path.write_bytes(gzip.compress(data) if compress else data)
    _never_read(monkeypatch)
    with pytest.raises(InvalidInputError, match="NIfTI file is truncated: its header declares 480 bytes of voxels, "
                                                "it holds 380"):
        _read(path, image, tmp_path)


def test_a_corrupt_gzip_stream_is_refused(image: sitk.Image, label: sitk.Image, tmp_path: Path) -> None:
    path = _write(label, tmp_path / "label.nii.gz")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # the uncompressed size in the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="gzip stream is truncated or corrupt"):
        _read(path, image, tmp_path)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_a_header_only_bomb_is_refused_before_anything_is_allocated(
    image: sitk.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    """352 bytes declaring 16 GB: SimpleITK allocated it all before any check."""
    header = nifti_header_only((2048, 2048, 1024), np.int32)
    path = tmp_path / ("bomb.nii.gz" if compress else "bomb.nii")
    path.write_bytes(gzip.compress(header) if compress else header)
    _never_read(monkeypatch)
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match=r"does not lie on the grid of series 1\.2\.3\.4: its NIfTI header "
                                                r"declares size \(2048, 2048, 1024\), the image is \(10, 12, 4\)"):
        _read(path, image, tmp_path)
    assert time.monotonic() - started < 1.0


def test_a_gzip_bomb_on_the_grid_is_refused_while_bounded(
    image: sitk.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header on the grid followed by 256 MB of zeros: decompressed in bounded chunks, refused after 481 bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [compressor.compress(nifti_header_only(GRID))]
    chunks += [compressor.compress(bytes(16 << 20)) for _ in range(16)]
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(b"".join(chunks) + compressor.flush())
    assert path.stat().st_size < LIMIT
    _never_read(monkeypatch)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="holds more data than the 480 bytes of voxels its header "
                                                    "declares .*decompression bomb"):
            _read(path, image, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * label_files.CHUNK


def test_more_voxel_bytes_than_the_limit_are_refused(image: sitk.Image, tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    path.write_bytes(gzip.compress(nifti_header_only(GRID, np.float64)))  # on the grid, but 3840 bytes of voxels
    with pytest.raises(TooLargeError, match="declares 0.0 MB of voxels, more than .*max_upload_mb"):
        _read(path, image, tmp_path, limit=1000)


def test_a_file_larger_than_the_limit_is_refused(image: sitk.Image, label: sitk.Image, tmp_path: Path) -> None:
    path = _write(label, tmp_path / "label.nii", compress=False)
    with pytest.raises(TooLargeError, match="max_upload_mb"):
        _read(path, image, tmp_path, limit=400)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"PK\x03\x04" + bytes(400), "not NIfTI-1"),
        (b"\x1f\x8b" + bytes(40), "gzip stream is truncated or corrupt"),
        (b"\x5c\x01\x00\x00" + bytes(400), r"magic b'', not a single-file NIfTI-1"),
        (b"", "ends inside its NIfTI header"),
    ],
    ids=["zip", "broken-gzip", "no-magic", "empty"],
)
def test_a_file_that_is_not_nifti_is_refused(image: sitk.Image, tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "label.nii.gz"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=reason):
        _read(path, image, tmp_path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("sizes: 10 12 4", "sizes: 4096 4096 4096"), r"declares size \(4096, 4096, 4096\)"),
        (("encoding: gzip", "encoding: bzip2"), "encoding 'bzip2'; save it raw or gzip-compressed"),
        (("encoding: gzip", "encoding: gzip\ndata file: /etc/passwd"), "detached data file"),
        (("type: unsigned char", "type: block"), "voxel type 'block'"),
        (("NRRD0004", "NRRX0004"), "not NRRD"),
    ],
    ids=["bomb", "bzip2", "detached", "block", "magic"],
)
def test_a_nrrd_header_is_checked_before_simpleitk(
    image: sitk.Image, label: sitk.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    change: tuple[str, str], reason: str,
) -> None:
    path = _write(label, tmp_path / "label.seg.nrrd")
    data = path.read_bytes()
    end = data.index(b"\n\n")
    path.write_bytes(data[:end].decode().replace(*change).encode() + data[end:])
    _never_read(monkeypatch)
    with pytest.raises(InvalidInputError, match=reason):
        _read(path, image, tmp_path)


def test_a_raw_nrrd_with_missing_voxels_is_refused(image: sitk.Image, label: sitk.Image, tmp_path: Path) -> None:
    path = _write(label, tmp_path / "label.nrrd", compress=False)
    path.write_bytes(path.read_bytes()[:-80])
    with pytest.raises(InvalidInputError, match="NRRD file is truncated: its header declares 480 bytes"):
        _read(path, image, tmp_path)


def test_an_ohif_bin_label_takes_the_image_geometry(image: sitk.Image, label: sitk.Image, tmp_path: Path) -> None:
    path = tmp_path / "label.bin"
    path.write_bytes(sitk.GetArrayFromImage(label).tobytes())
    read = _read(path, image, tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(label))
    assert (read.GetOrigin(), read.GetSpacing()) == (image.GetOrigin(), image.GetSpacing())
    path.write_bytes(bytes(479))
    with pytest.raises(InvalidInputError, match="the .bin label has 479 bytes, but the grid of series 1.2.3.4 has "
                                                r"480 voxels \(10, 12, 4\)"):
        _read(path, image, tmp_path)
