"""Keeping HOPE in step with the store: store events, precomputed suggestions, and automatic retraining."""
