"""Visual quality control of a built dataset (``talkdata inspect``): the figure of one sample, its
self-contained HTML page, and the contact sheet, read from the shards.

The drawing is :mod:`talkdata.figures` (shared with the dataset card, which the build writes from
statistics collected while packing and never through this package). May import ``talkdata.figures``,
``talkdata.media`` (the ``video.mp4`` decoder), ``talkdata.store``, ``talkdata.manifest`` and
``talkdata.shards``; never the build (``talkdata.pipeline``), training or the download code.
"""

from .inspection import inspect_dataset

__all__ = ["inspect_dataset"]
