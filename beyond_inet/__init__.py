"""beyond-inet: compare image classifiers on far more than ImageNet accuracy."""

__version__ = "0.1.0"
