"""The landmark shape model, fitted after every clip is processed, and its per-sample fields.

Frames are procrustes-normalised against the template, the speaker's identity is removed per clip
(``norm_t - norm_ref + template``, reference frame from ``shape.reference``), and a PCA basis is
fitted on a deterministic sample of those frames from the fitting split (``shape.fit_split``,
default train, so that test data never shapes the basis). Every sample then gets ``lmk_norm.npy``
and ``pca.npy`` from that basis, or from one given with ``build --shape-model``.

Bounded in memory whatever the corpus size: which frames are sampled is decided first, from each
clip's frame count alone (``FrameSampler``: the ``shape.max_frames`` frames with the smallest hash
of (seed, clip key, frame index); every frame when the fitting clips have no more than that). The
normalisation then runs where the landmarks are (``sampled_frames``, an executor task), and only
the sampled frames reach the driver and the PCA.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

import numpy as np

from ..config import Shape
from ..face.shape import (
    ShapeModel,
    fit_pca,
    fit_region_pca,
    normalize_procrustes,
    project,
    remove_identity,
    standardize,
)
from ..face.template import mean_face_2d

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def identity_removed(landmarks: np.ndarray, model_template_std: np.ndarray, template: np.ndarray,
                     reference: str, basis=None) -> np.ndarray:
    norm = normalize_procrustes(landmarks, template)
    return remove_identity(norm, model_template_std, reference, basis)


def frame_hashes(key: str, frames: int, seed: int) -> np.ndarray:
    """A uint64 per frame of one clip, a pure function of (seed, key, frame index) (splitmix64)."""
    base = np.uint64(int.from_bytes(hashlib.sha256(f"{seed}\0{key}".encode()).digest()[:8], "little"))
    with np.errstate(over="ignore"):
        z = base + (np.arange(1, frames + 1, dtype=np.uint64) * _GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


SLACK_FRAMES = 65536  # frames buffered beyond 4 x max_frames before the smallest hashes are kept


class FrameSampler:
    """Choose ``max_frames`` frames of the fitting clips from their frame counts alone.

    Feed the clips in key order (``add``); ``selection()`` gives ``{clip number: sorted frame
    indices}``: the ``max_frames`` frames of smallest (hash, clip number, frame index). Memory is
    three flat arrays of ``4 x max_frames + SLACK_FRAMES`` frames whatever the number of clips (no
    object per clip): once ``max_frames`` frames are kept, a frame hashed at or above the largest
    kept hash can never be chosen and is not buffered. The choice does not depend on how the clips
    are processed."""

    def __init__(self, max_frames: int, seed: int):
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames, self.seed = max_frames, seed
        self.total = 0
        self.clips = 0
        capacity = 4 * max_frames + SLACK_FRAMES
        self._hashes = np.empty(capacity, dtype=np.uint64)
        self._numbers = np.empty(capacity, dtype=np.int64)
        self._frames = np.empty(capacity, dtype=np.int64)
        self._buffered = 0
        self._threshold: np.uint64 | None = None  # the largest kept hash, once max_frames frames are kept

    def add(self, key: str, frames: int) -> None:
        number = self.clips
        self.clips += 1
        self.total += frames
        if frames <= 0:
            return
        hashes, index = frame_hashes(key, frames, self.seed), np.arange(frames, dtype=np.int64)
        if len(hashes) > self.max_frames:  # a clip longer than the sample: only its own smallest can be chosen
            keep = np.lexsort((index, hashes))[: self.max_frames]
            hashes, index = hashes[keep], index[keep]
        if self._buffered + len(hashes) > len(self._hashes):
            self._reduce()
        if self._threshold is not None:  # this clip comes after every kept one: it loses a tie
            keep = hashes < self._threshold
            hashes, index = hashes[keep], index[keep]
        at, self._buffered = self._buffered, self._buffered + len(hashes)
        self._hashes[at:self._buffered], self._frames[at:self._buffered] = hashes, index
        self._numbers[at:self._buffered] = number

    def _reduce(self) -> None:
        count = self._buffered
        if count <= self.max_frames:
            return
        hashes, numbers, frames = self._hashes[:count], self._numbers[:count], self._frames[:count]
        order = np.lexsort((frames, numbers, hashes))[: self.max_frames]  # smallest hashes, ties by position
        kept = hashes[order], numbers[order], frames[order]
        self._buffered = self.max_frames
        self._hashes[:self.max_frames], self._numbers[:self.max_frames], self._frames[:self.max_frames] = kept
        self._threshold = kept[0][-1]

    def chosen(self) -> tuple[np.ndarray, np.ndarray]:
        """The chosen frames as two flat arrays sorted by (clip number, frame index): clip numbers, frame indices."""
        self._reduce()
        count = self._buffered
        numbers, frames = self._numbers[:count], self._frames[:count]
        order = np.lexsort((frames, numbers))
        return numbers[order], frames[order]

    def groups(self) -> Iterator[tuple[int, np.ndarray]]:
        return clip_groups(*self.chosen())

    def selection(self) -> dict[int, np.ndarray]:
        return dict(self.groups())


def clip_groups(numbers: np.ndarray, frames: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(clip number, its sorted frame indices)`` of :meth:`FrameSampler.chosen`'s arrays, in clip order, made one
    at a time (no object per clip held)."""
    starts = np.flatnonzero(np.diff(numbers, prepend=-1))
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(numbers)
        yield int(numbers[start]), frames[start:end].copy()


def sampled_frames(settings: Shape, landmarks: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The identity-removed shapes (n, 68, 2) float64 of the chosen ``frames`` of one clip."""
    template = mean_face_2d()
    norm = identity_removed(landmarks, standardize(template), template, settings.reference)
    return norm[np.asarray(frames, dtype=np.int64)]


def fit_basis(sample: np.ndarray, settings: Shape, clips: int) -> ShapeModel:
    """The PCA bases on the sampled frames (N, 68, 2), given in (clip key, frame) order."""
    template = mean_face_2d()
    template_std = standardize(template)
    k = min(settings.n_components, 136, len(sample))
    basis = fit_pca(sample, k, settings.scale)
    regions = {name: fit_region_pca(sample, name, min(settings.n_components, len(sample)), settings.scale)
               for name in settings.regions}
    fit = {"reference": settings.reference, "project_identity": settings.project_identity,
           "n_components": settings.n_components, "scale": settings.scale, "max_frames": settings.max_frames,
           "seed": settings.seed, "fit_split": settings.fit_split, "regions": list(settings.regions),
           "frames_sampled": int(len(sample)), "clips": clips}
    return ShapeModel(template=template, template_std=template_std, basis=basis, region_bases=regions, settings=fit)


#: shape settings a given model (``build --shape-model``) decides for the samples: its basis (components,
#: scale, regions) and how its fields are made (reference, project_identity). The others only steer a fit.
MODEL_SETTINGS = ("reference", "project_identity", "n_components", "scale", "regions")


def model_mismatch(recorded: dict, settings: Shape) -> tuple[str, str, str] | None:
    """``(setting, the model's value, the build's value)`` (values as ``--set`` writes them) of the
    first :data:`MODEL_SETTINGS` entry that the model's recorded fit settings give differently from
    ``settings``, or None. A setting the model does not record is not compared (models from outside
    talkdata's fit may record none)."""
    for name in MODEL_SETTINGS:
        if name not in recorded:
            continue
        given = getattr(settings, name)
        given = list(given) if isinstance(given, tuple) else given
        if recorded[name] != given:
            return name, json.dumps(recorded[name]), json.dumps(given)
    return None


def fit_shape_model(clips: Iterable[tuple[str, np.ndarray]], settings: Shape) -> ShapeModel:
    """Fit in one process on ``(key, (T_i, 68, 2) source landmarks)`` of the fitting clips in key order
    (the build does the same with the normalisation on its workers)."""
    clips = list(clips)
    sampler = FrameSampler(settings.max_frames, settings.seed)
    for key, landmarks in clips:
        sampler.add(key, len(landmarks))
    parts = [sampled_frames(settings, clips[i][1], frames) for i, frames in sampler.groups()]
    sample = np.concatenate(parts) if parts else np.zeros((0, 68, 2))
    return fit_basis(sample, settings, len(clips))


def shape_fields(landmarks: np.ndarray, model: ShapeModel) -> tuple[np.ndarray, np.ndarray]:
    """``lmk_norm`` (T,68,2) float32 and ``pca`` (T,K) float32 of one clip."""
    settings = model.settings
    basis = model.basis if settings.get("project_identity") else None
    norm = identity_removed(landmarks, model.template_std, model.template, settings.get("reference", "last"), basis)
    return norm.astype(np.float32), project(norm, model.basis)
