"""talkdata: turn talking-face corpora into versioned, training-ready WebDataset shards."""

import logging

from .version import __version__

# a library configures no output: messages reach the user only through the handlers they set up
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # talkdata.load is imported on first use, so that ``import talkdata`` stays light
    if name == "load":
        from .loader import load

        return load
    raise AttributeError(f"module 'talkdata' has no attribute {name!r}")
