"""What a neck phantom may look like: volume geometry and the ranges its anatomy is drawn from."""

from __future__ import annotations

from dataclasses import dataclass, fields

VERTEBRAE = tuple(f"C{i}" for i in range(1, 8))
MIN_SLICES = 24  # below this the seven vertebrae cannot each cover a few slices

Range = tuple[float, float]


@dataclass(frozen=True)
class PhantomSpec:
    """Volume geometry and the ranges every phantom parameter is drawn from (uniformly).

    ``shape`` is ``(z, y, x)`` voxels, ``spacing`` ``(x, y, z)`` mm. Sizes are in mm and describe C1; the other
    vertebrae grow linearly down to C7, which is ``size_growth`` times larger (T1 continues the trend).
    ``noise_hu`` is the CT noise; MR noise, bias field and tissue signals are drawn in
    :mod:`hope.phantoms.neck_mr`. Needs at least :data:`MIN_SLICES` slices.
    """

    shape: tuple[int, int, int] = (40, 64, 64)
    spacing: tuple[float, float, float] = (1.8, 1.8, 2.5)
    noise_hu: Range = (10.0, 40.0)
    tumor_probability: float = 1.0
    tumor_radius_mm: Range = (3.0, 9.0)
    body_width_mm: Range = (15.0, 20.0)
    body_depth_mm: Range = (13.0, 16.0)
    body_height_mm: Range = (9.0, 12.0)
    disc_height_mm: Range = (3.0, 5.0)
    size_growth: Range = (1.05, 1.3)
    lordosis_mm: Range = (0.0, 6.0)
    rotation_deg: Range = (-8.0, 8.0)
    shift_mm: Range = (-4.0, 4.0)
    canal_width_mm: Range = (17.0, 22.0)
    canal_depth_mm: Range = (12.0, 15.0)
    cord_width_mm: Range = (8.0, 11.0)
    cord_depth_mm: Range = (6.0, 8.0)
    neck_width_mm: Range = (95.0, 110.0)
    neck_depth_mm: Range = (85.0, 100.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be three positive voxel counts (z, y, x), got {self.shape}")
        if self.shape[0] < MIN_SLICES:
            raise ValueError(f"shape needs at least {MIN_SLICES} slices for C1-C7, got {self.shape[0]}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be three positive mm values (x, y, z), got {self.spacing}")
        if not 0.0 <= self.tumor_probability <= 1.0:
            raise ValueError(f"tumor_probability must lie in [0, 1], got {self.tumor_probability}")
        for field in fields(self):  # annotations are strings (postponed evaluation)
            bounds = getattr(self, field.name)
            if field.type == "Range" and (len(bounds) != 2 or bounds[0] > bounds[1]):
                raise ValueError(f"{field.name} must be a (low, high) pair with low <= high, got {bounds}")
        if self.noise_hu[0] < 0 or self.tumor_radius_mm[0] <= 0:
            raise ValueError("noise_hu must be >= 0 and tumor_radius_mm > 0")
        if self.cord_width_mm[1] >= self.canal_width_mm[0] or self.cord_depth_mm[1] >= self.canal_depth_mm[0]:
            raise ValueError(
                f"the cord must fit inside the canal: cord_width_mm {self.cord_width_mm} and cord_depth_mm "
                f"{self.cord_depth_mm} must stay below canal_width_mm {self.canal_width_mm} and canal_depth_mm "
                f"{self.canal_depth_mm}"
            )
