"""Acquire: bring a corpus into ``DATA_ROOT/NAME`` in the layout its :mod:`talkdata.corpora` module indexes.

Owns, one job per module: the data root (:mod:`.root`), the plan of a download (:mod:`.plan`, pure),
remote checksum lists (:mod:`.checksums`), access and credentials (:mod:`.access`, :mod:`.credentials`),
the markers of what is done (:mod:`.state`), HTTP transfers (:mod:`.http`), archive extraction
(:mod:`.archives`), YouTube fetches and tube cutting (:mod:`.youtube`, :mod:`.tubes`), the run of a
download (:mod:`.download`), per-corpus download hooks (:mod:`.hooks`), the build's entry point
(:mod:`.resolve`) and the description for ``talkdata recipes`` (:mod:`.describe`).

May import: ``talkdata.errors``, ``talkdata.recipe`` and ``talkdata.corpora`` (the layouts it writes).
Reached only from the CLI and the build (``talkdata.pipeline.build``); nothing below it imports it.
"""
