"""talkdata: turn talking-face corpora into versioned, training-ready WebDataset shards."""

__version__ = "0.1.0"
