"""Corpora: one module per dataset that indexes its raw layout into clip records.

Owns: each corpus's layout, index (``index(root, config) -> Iterator[ClipRecord]``: a generator, records one at a
time, so no list of records is held), official splits and
errata (files documented as broken become rejects), optional ``check_source(root)``; the shared record
type and its compact list (:mod:`.records`), the train/val/test assignment (:mod:`.splits`) and the
stored index reused while a source tree is unchanged (:mod:`.index_cache`).

May import: the standard library, numpy/av where a corpus needs them, ``talkdata.errors`` and
``talkdata.files`` (``index_cache``: also ``talkdata.version``). Never
``talkdata.acquire`` (downloading is a layer above: ``acquire`` may read a corpus's layout from here,
not the reverse), nor ``pipeline``, ``loader``, ``qa``.
"""
