"""Streaming loader: :func:`load` a built dataset as windows or as a published system's inputs.

Owns reading a built dataset for training: its manifest and shard list (``shard_list``), which
shards each DataLoader worker and rank reads (``epoch_plan``), reading the tars and grouping their members
into samples (``samples``, over the tar reader in ``fast.tar``), decoding members (``members``,
``fast.npy``), damaged data (``damage``), the profiles of published systems (``profile_base``, the
registry ``profiles`` and one module each), their windowing and frame transforms (``windows`` over
``fast.interp``, ``frames``), batching (``collate``) and :func:`talkdata.load` itself (``api``).

May import: ``talkdata.errors``, ``talkdata.declare``, ``talkdata.media`` (WAV decoding),
``talkdata.face.shape`` (the shape model and ATVG's basis) and ``talkdata.shards`` (a sample's
hash, for ``verify=True``). It reads what the build wrote and never imports the build
(``talkdata.pipeline``), ``talkdata.qa``, ``talkdata.train`` or the download code; ``talkdata.train``
imports it.
"""

from .api import TalkDataset, load
from .collate import collate
from .damage import DamagedSample
from .profiles import registry

__all__ = ["load", "collate", "DamagedSample", "TalkDataset", "profile_names"]


def profile_names() -> list[str]:
    return sorted(name for name in registry() if name)
