"""The ``image`` stage (see :mod:`daskcal.stages.imaging`, where it lives)."""

from daskcal.stages.imaging import ImageConfig, image

__all__ = ["ImageConfig", "image"]
