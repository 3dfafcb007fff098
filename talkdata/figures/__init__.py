"""Figures of a built dataset, as pure functions of arrays: drawing primitives (``render``), the
seeded choice of the samples a figure shows (``choice``), the contact sheet (``contact_sheet``) and
the card's charts (``charts``).

Shared by the dataset card (:mod:`talkdata.pipeline.card`, from statistics collected while packing)
and ``talkdata inspect`` (:mod:`talkdata.qa`, from the shards), so that both draw the same pixels.
Reads no file. May import ``talkdata.face.points`` (landmark regions) only.
"""
