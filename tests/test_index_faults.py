"""Source folders as careless users leave them: duplicates, folder links and loops, unreadable folders,
the output inside the source, file names that are not UTF-8. Built from the real GRID sample clips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from checks import error_line, sample_json
from click.testing import CliRunner

from talkdata.cli import main
from talkdata.config import BuildConfig
from talkdata.corpora import grid, videos
from talkdata.corpora.records import ClipRecord

DATA = Path(__file__).parent / "data"
CLIP = DATA / "grid" / "s1" / "bbaf2n.mpg"
OTHER = DATA / "grid" / "s2" / "swwp2s.mpg"


def one_error(*args: str) -> str:
    return error_line(CliRunner().invoke(main, list(args)))


samples = sample_json


def test_grid_duplicate_clip_id_names_both_files(tmp_path):
    source = tmp_path / "grid"
    (source / "s1").mkdir(parents=True)
    (source / "extra" / "s1").mkdir(parents=True)
    shutil.copy(CLIP, source / "s1" / "bbaf2n.mpg")
    shutil.copy(OTHER, source / "extra" / "s1" / "bbaf2n.mpg")  # same speaker and id, another video
    line = one_error("build", "grid", "--source", str(source), "--out", str(tmp_path / "out"))
    assert line == ("error: two GRID clips with the id s1/bbaf2n: extra/s1/bbaf2n.mpg and s1/bbaf2n.mpg; keep one "
                    "(a clip id must be unique within a speaker)")
    assert not (tmp_path / "out").exists()


def test_folder_links_are_followed_once_and_loops_end(tmp_path):
    elsewhere = tmp_path / "other-disk" / "s2"
    elsewhere.mkdir(parents=True)
    shutil.copy(OTHER, elsewhere / "swwp2s.mpg")
    source = tmp_path / "grid"
    (source / "s1").mkdir(parents=True)
    shutil.copy(CLIP, source / "s1" / "bbaf2n.mpg")
    (source / "s2").symlink_to(elsewhere, target_is_directory=True)  # a speaker folder that is a link
    (source / "s1" / "back").symlink_to(source, target_is_directory=True)  # a loop
    (source / "again").symlink_to(source / "s1", target_is_directory=True)  # a second way to s1
    records = grid.index(source, BuildConfig())
    assert sorted((r.speaker, r.clip, r.relpath) for r in records) == [
        ("s1", "bbaf2n", "s1/bbaf2n.mpg"), ("s2", "swwp2s", "s2/swwp2s.mpg")]
    assert len(list(videos.index(source, BuildConfig()))) == 2


def unlistable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot list: a mode-000 folder, or (as root, who lists anything) a kernel
    folder that refuses even root; None when there is none."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o000)
        return folder
    for candidate in (Path("/proc/1/map_files"),):
        try:
            os.listdir(candidate)
        except PermissionError:
            return candidate
        except OSError:
            continue
    return None


def test_unreadable_folders_are_listed_not_skipped(tmp_path):
    locked = unlistable_folder(tmp_path)
    if locked is None:
        pytest.skip("no folder this user cannot list (root lists every folder, and /proc/1/map_files is readable)")
    source = tmp_path / "videos"
    (source / "anna").mkdir(parents=True)
    shutil.copy(CLIP, source / "anna" / "clip.mpg")
    (source / "bob").symlink_to(locked, target_is_directory=True)  # a speaker folder on a share we may not read
    (source / "carl").symlink_to(locked, target_is_directory=True)
    try:
        line = one_error("build", "videos", "--source", str(source), "--out", str(tmp_path / "out"))
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o755)
    assert line == (f"error: cannot read 2 folder(s) under {source}: {source}/bob (Permission denied); "
                    f"{source}/carl (Permission denied); fix their permissions or move them out of the source folder")


def test_output_inside_the_source_is_not_indexed(tmp_path):
    source = tmp_path / "clips"
    (source / "bob").mkdir(parents=True)
    shutil.copy(CLIP, source / "bob" / "clip.mpg")
    out = source / "built"
    for _ in range(2):
        # --keep-cache: the build keeps its cached video.mp4 files, which the index must not take for clips
        result = CliRunner().invoke(main, ["build", "videos", "--source", str(source), "--out", str(out), "--no-progress",
                                           "--keep-cache"])
        assert result.exit_code == 0, result.output
        assert sorted(samples(out)) == ["bob/clip"]
    cached = [p for p in out.rglob("*.mp4")]
    assert cached  # the build keeps its own mp4 files under the source ...
    assert [r.relpath for r in videos.index(source, BuildConfig(), exclude=(out,))] == ["bob/clip.mpg"]  # ... never clips
    assert len(list(videos.index(source, BuildConfig()))) > 1  # what the next build indexed before the output was excluded


def test_file_names_that_are_not_utf8_build_with_safe_keys(tmp_path):
    source = tmp_path / "clips"
    speaker = source / "spk"
    speaker.mkdir(parents=True)
    name = os.fsdecode(b"caf\xe9 take.mpg")  # Latin-1, as old cameras and zip tools write it
    shutil.copy(CLIP, speaker / name)
    assert "\udce9" in name  # the OS hands the byte over as a surrogate escape
    record = next(videos.index(source, BuildConfig()))
    assert Path(record.path).read_bytes() == CLIP.read_bytes()  # the path still opens the file
    assert record.relpath == "spk/caf\\xe9 take.mpg" and record.clip == "caf\\xe9 take"
    assert ClipRecord.from_dict(record.to_dict()) == record
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "videos", "--source", str(source), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    (key, meta), = samples(out).items()
    assert key.startswith("spk/caf_xe9_take_") and key.replace("/", "").replace("_", "").isalnum()
    assert meta["source"]["path"] == "spk/caf\\xe9 take.mpg"
    assert (out / "index.parquet").is_file()

