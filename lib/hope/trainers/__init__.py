"""MONAI Label train tasks."""
