"""The build: per-clip processing, where it runs, and the dataset-level stages.

- ``clip``: one clip -> sample files + metadata (pure); ``task``: one clip -> its ``Outcome``
  (``outcome``: ``Done | Rejected | Failed``) recorded in the ``cache``;
- ``isolation``: tasks in a supervised child process; ``executor``: tasks in this process or on dask
  (in batches);
- ``shape_fit``, ``pack``, ``generations``, ``card``: the dataset-level stages (shape model, shards and
  index, the cache pointing into the shards, the dataset card, written from the ``pack_stats`` each
  shard task collects; ``card_figures``, ``hub_features`` and ``croissant`` write its parts);
  ``fingerprint``: the manifest's source fingerprint; ``build``: the orchestration.

``task`` imports neither ``isolation`` nor ``executor``; ``isolation`` imports ``task`` only.
"""
