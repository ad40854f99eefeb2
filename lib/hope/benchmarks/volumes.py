"""Large synthetic CT cases for the benchmarks: neck-CT phantoms made at a manageable size, then resampled to the
size asked (e.g. 200 slices of 512²), written as uncompressed NIfTI image/label pairs."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import SimpleITK as sitk

from hope.phantoms import PhantomSpec, generate_neck_ct

MAX_GENERATED = 128  # phantoms are generated at most this many voxels per row, then resampled to the size asked


def write_case(seed: int, slices: int, size: int, fov: float, labels: dict[str, int], folder: Path) -> dict[str, str]:
    """One phantom CT and its label as uncompressed NIfTI: ``slices`` of ``size``² over ``fov`` mm, 1 mm apart."""
    generated = min(size, MAX_GENERATED)
    spec = PhantomSpec(shape=(slices, generated, generated), spacing=(fov / generated, fov / generated, 1.0))
    phantom = generate_neck_ct(seed, labels, spec)
    pair = {}
    for key, array, interpolator in (("image", phantom.image, sitk.sitkLinear),
                                     ("label", phantom.label, sitk.sitkNearestNeighbor)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(phantom.spacing)
        if generated != size:
            spacing = (fov / size, fov / size, 1.0)
            image = sitk.Resample(image, (size, size, slices), sitk.Transform(), interpolator, (0.0, 0.0, 0.0),
                                  spacing, image.GetDirection(), -1000 if key == "image" else 0, image.GetPixelID())
        pair[key] = str(folder / f"{seed}_{key}.nii")
        sitk.WriteImage(image, pair[key], useCompression=False)
    return pair


def make_cases(seeds: list[int], slices: int, size: int, fov: float, labels: dict[str, int], folder: Path
               ) -> list[dict[str, str]]:
    """The phantoms of ``seeds``, made in parallel processes."""
    with ProcessPoolExecutor() as pool:
        futures = [pool.submit(write_case, seed, slices, size, fov, labels, folder) for seed in seeds]
        return [f.result() for f in futures]
