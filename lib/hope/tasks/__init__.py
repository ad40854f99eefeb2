"""MONAI Label TaskConfigs: one per task kind, wiring infer, train and strategy classes."""
