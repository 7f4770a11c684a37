"""Importing this package registers every model (see foveal/registry.py)."""

from .classify import small, torchvision_zoo  # noqa: F401
