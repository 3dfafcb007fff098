"""Streaming loader: :func:`load` a built dataset as windows or as a published system's inputs."""

from .collate import collate
from .dataset import TalkDataset, load
from .profiles import registry

__all__ = ["load", "collate", "TalkDataset", "profile_names"]


def profile_names() -> list[str]:
    return sorted(name for name in registry() if name)
