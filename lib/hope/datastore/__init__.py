"""Datastores: where HOPE reads images and writes labels."""
