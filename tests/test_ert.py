"""talkdata.face.ert evaluates dlib's 68-point model itself: its points must be dlib's, call for call.

The reference is the ``dlib-bin`` wheel's own ``shape_predictor`` on the same gray frame and box. The
frames are real (GRID, CREMA-D, VoxCeleb2 samples in tests/data), and the faces are found by dlib's
HOG detector, not by talkdata. The boxes are jittered, cut by the frame edge, and given as a region
view, the way the tracker passes them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import dlib
import numpy as np
import pytest

import media_factory as mf
from talkdata.errors import UserError
from talkdata.face import ert
from talkdata.face.landmarks import dlib_model_path, landmark_backend

CLIPS = ("grid/s1/bbaf2n.mpg", "crema_d/VideoFlash/1001_DFA_ANG_XX.flv", "voxceleb2_like/00002.mp4",
         "voxceleb2_like/00473.mp4")


@pytest.fixture(scope="module")
def dlib_predictor():
    return dlib.shape_predictor(str(dlib_model_path()))


@pytest.fixture(scope="module")
def model():
    return ert.load(dlib_model_path())


def dlib_points(predictor, gray, box) -> np.ndarray:
    shape = predictor(np.ascontiguousarray(gray), dlib.rectangle(*(int(v) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def gray_frames(relpath: str, every: int) -> list[np.ndarray]:
    return mf.read_frames(mf.DATA / relpath, fmt="gray")[::every]


def test_the_model_has_the_published_layout(model):
    """shape_predictor_68_face_landmarks.dat: 15 cascades of 500 depth-4 trees on 500 feature pixels."""
    assert model.points == 68
    assert model.split_pixels.shape == (15, 500, 15, 2) and model.thresholds.shape == (15, 500, 15)
    assert model.leaves.shape == (15, 500, 16, 136) and model.leaves.dtype == np.float32
    assert model.anchors.shape == (15, 500) and model.offsets.shape == (15, 500, 2)
    assert 0 <= model.anchors.min() and model.anchors.max() < 68
    # the mean shape lies in the unit box, as dlib's training normalises it
    xs, ys = model.mean_shape[0::2], model.mean_shape[1::2]
    assert -0.1 < xs.min() < 0.2 and 0.8 < xs.max() < 1.1 and -0.3 < ys.min() < 0.3 and 0.8 < ys.max() < 1.1


@pytest.mark.parametrize("relpath", CLIPS)
def test_points_are_dlibs_on_real_frames(relpath, model, dlib_predictor):
    detector = dlib.get_frontal_face_detector()
    rng = np.random.default_rng(7)
    frames = gray_frames(relpath, every=5)
    found = [d for d in detector(frames[0], 1)]
    assert found, f"dlib finds no face in {relpath}"
    face = found[0]
    calls = 0
    for gray in frames:
        height, width = gray.shape
        base = np.array([face.left(), face.top(), face.right(), face.bottom()])
        boxes = [base, base + np.r_[rng.integers(-15, 16, 2), rng.integers(-15, 16, 2)]]
        # a box cut by the frame's left and top edges: feature pixels outside read as 0
        boxes.append(base - np.array([base[0] + 10, base[1] + 10, base[0] + 10, base[1] + 10]) + np.array([0, 0, 20, 20]))
        for box in boxes:
            expected = dlib_points(dlib_predictor, gray, box)
            np.testing.assert_array_equal(ert.predict(model, gray, tuple(box)), expected)
            # the tracker passes a region view and a box relative to it
            y0, x0 = max(0, box[1] - 25), max(0, box[0] - 25)
            region = gray[y0 : min(height, box[3] + 25), x0 : min(width, box[2] + 25)]
            local = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
            assert not region.flags.c_contiguous
            np.testing.assert_array_equal(ert.predict(model, region, local), dlib_points(dlib_predictor, region, local))
            calls += 2
    assert calls >= 30


def test_the_dlib_backend_uses_it_and_rounds_boxes_like_before(dlib_predictor):
    gray = gray_frames("grid/s1/bbaf2n.mpg", every=25)[1]
    box = np.array([131.6, 71.4, 236.5, 176.49])
    points = landmark_backend("dlib").predict(gray, None, box)
    assert points.shape == (68, 2) and points.dtype == np.float64
    np.testing.assert_array_equal(points, dlib_points(dlib_predictor, gray, (132, 71, 236, 176)))


def test_the_output_does_not_depend_on_earlier_calls(model):
    frames = gray_frames("voxceleb2_like/00473.mp4", every=10)
    box = (60, 50, 170, 160)
    first = [ert.predict(model, g, box) for g in frames]
    again = [ert.predict(model, g, box) for g in reversed(frames)][::-1]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "text", "trailing", "missing"])
def test_a_damaged_model_file_is_one_error_line(damage, tmp_path):
    path = tmp_path / "shape_predictor_68_face_landmarks.dat"
    if damage == "truncated":
        with open(dlib_model_path(), "rb") as src:
            path.write_bytes(src.read(5_000_000))
    elif damage == "text":
        path.write_text("<html>404 not found</html>\n")
    elif damage == "trailing":
        shutil.copyfile(dlib_model_path(), path)
        with open(path, "ab") as out:
            out.write(b"\x01\x05")
    with pytest.raises(UserError) as err:
        ert.load(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    if damage != "missing":
        assert "not a readable dlib shape predictor" in message


def test_it_works_where_no_compile_cache_can_be_written(dlib_predictor, tmp_path):
    """A read-only install and home: numba finds no cache folder; the evaluator compiles in the process."""
    gray = gray_frames("grid/s1/bbaf2n.mpg", every=25)[1]
    np.save(tmp_path / "gray.npy", gray)
    code = (
        "import sys, numpy as np, numba.core.caching as caching\n"
        "caching.CacheImpl._locator_classes = []  # as if no folder were writable\n"
        "from talkdata.face import ert\n"
        "from talkdata.face.landmarks import dlib_model_path\n"
        "print(type(ert._predict._cache).__name__)\n"
        "points = ert.predict(ert.load(dlib_model_path()), np.load(sys.argv[1]), (132, 71, 236, 176))\n"
        "np.save(sys.argv[2], points)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "gray.npy"), str(tmp_path / "points.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["NullCache"]
    np.testing.assert_array_equal(np.load(tmp_path / "points.npy"), dlib_points(dlib_predictor, gray, (132, 71, 236, 176)))
