"""The toolkit's version: part of every cache key and of ``dataset.json`` (a new version reprocesses clips)."""

__version__ = "0.2.0"
