"""Model versions: every finished training run is kept; one version serves per task."""
