"""Visual quality control of a built dataset: figures of one sample, contact sheets, the dataset
card's figures and a self-contained HTML page per sample (``talkdata inspect``)."""

from .inspection import inspect_dataset

__all__ = ["inspect_dataset"]
