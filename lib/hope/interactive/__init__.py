"""Interactive correction helpers: simulated annotators for benchmarks and tests."""

from hope.interactive.simulate import Scribble, dice, error_regions, next_scribble, paint

__all__ = ["Scribble", "dice", "error_regions", "next_scribble", "paint"]
