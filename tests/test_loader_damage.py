"""The loader on damaged copies of a real built dataset: every read error names the shard, the sample
and the member and points to ``talkdata verify``; ``verify=True`` catches bytes changed inside a
member; ``handler="warn"`` (or a function) skips what is damaged and keeps the rest.

Each test copies the session's GRID build (3 samples, one shard per split) to its own folder and
damages one member of the train shard in place (same size, so the tar stays well-formed) or
rewrites the tar without it.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import talkdata
from talkdata.errors import UserError
from talkdata.loader.damage import DamagedSample
from talkdata.manifest import verify

FIELDS = ["video.mp4", "audio.wav", "mfcc.npy", "lmk.npy"]


@pytest.fixture
def dataset(grid_dataset, tmp_path) -> Path:
    copy = tmp_path / "grid"
    shutil.copytree(grid_dataset, copy)
    return copy


def train_shard(root: Path) -> Path:
    (path,) = sorted((root / "shards" / "train").glob("*.tar"))
    return path


def member_of(shard: Path, field: str) -> tuple[str, int, int]:
    """``(key, data offset, size)`` of the first sample's ``field`` member."""
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.partition(".")[2] == field:
                return member.name.partition(".")[0], member.offset_data, member.size
    raise AssertionError(f"no {field} in {shard}")


def damage(root: Path, field: str, change) -> str:
    """Replace the bytes of ``field`` in the train shard by ``change(bytes)`` (same length); the key."""
    shard = train_shard(root)
    key, offset, size = member_of(shard, field)
    data = bytearray(shard.read_bytes())
    new = change(bytes(data[offset : offset + size]))
    assert len(new) == size and new != data[offset : offset + size]
    data[offset : offset + size] = new
    shard.write_bytes(bytes(data))
    return key


def drop_member(root: Path, field: str) -> str:
    """Rewrite the train shard without the first sample's ``field``; the key."""
    shard = train_shard(root)
    key = member_of(shard, field)[0]
    buffer = io.BytesIO()
    with tarfile.open(shard) as source, tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as out:
        for member in source:
            if member.name != f"{key}.{field}":
                out.addfile(member, source.extractfile(member))
    shard.write_bytes(buffer.getvalue())
    return key


def items(root: Path, **kwargs) -> list[dict]:
    return list(talkdata.load(root, fields=FIELDS, split="all", shuffle=False, **kwargs))


def keys(found: list[dict]) -> set[str]:
    return {item["__key__"] for item in found}


def assert_names_the_damage(err: BaseException, root: Path, key: str, field: str) -> None:
    message = str(err)
    assert isinstance(err, DamagedSample) and isinstance(err, UserError)
    assert str(train_shard(root)) in message and f"sample {key}" in message and field in message
    assert f"talkdata verify {root}" in message and "\n" not in message


DAMAGES = {
    "npy_header": ("mfcc.npy", lambda b: b[:10] + b"X" * 20 + b[30:]),
    "npy_magic": ("lmk.npy", lambda b: b"\x00" * 6 + b[6:]),
    "mp4_zeroed": ("video.mp4", lambda b: b[:2000] + bytes(20000) + b[22000:]),
    "mp4_zeroed_head": ("video.mp4", lambda b: bytes(4000) + b[4000:]),
    "json_garbage": ("json", lambda b: b"\x00garbage" + b[8:]),
    "json_not_meta": ("json", lambda b: b"[" + b" " * (len(b) - 2) + b"]"),
    "wav_header": ("audio.wav", lambda b: bytes(44) + b[44:]),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_member_names_shard_key_and_member(dataset, case):
    field, change = DAMAGES[case]
    key = damage(dataset, field, change)
    with pytest.raises(DamagedSample) as info:
        items(dataset)
    assert_names_the_damage(info.value, dataset, key, field)
    # what the message points to does find it
    assert any(str(train_shard(dataset).relative_to(dataset)) in problem for problem in verify(dataset))


@pytest.mark.parametrize("case", ["npy_header", "mp4_zeroed", "json_garbage", "wav_header"])
def test_warn_handler_skips_the_damaged_sample_only(grid_dataset, dataset, case):
    field, change = DAMAGES[case]
    key = damage(dataset, field, change)
    clean = items(grid_dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = items(dataset, handler="warn")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and f"sample {key}" in messages[0] and field in messages[0]
    expected = [item for item in clean if item["__key__"] != key]
    assert keys(kept) == keys(clean) - {key} and len(keys(kept)) == 2
    assert len(kept) == len(expected)
    for got, want in zip(kept, expected):
        assert got["__key__"] == want["__key__"] and got["start"] == want["start"]
        assert np.array_equal(got["mfcc"], want["mfcc"]) and np.array_equal(got["video"], want["video"])


def test_flipped_byte_in_npy_payload_is_caught_by_verify(dataset):
    def flip(data: bytes) -> bytes:
        position = len(data) - 7  # inside the payload, after the header
        return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]

    key = damage(dataset, "mfcc.npy", flip)
    # decoding alone cannot tell: a valid array with one value changed
    assert keys(items(dataset)) == {"s1/bbaf2n", "s2/swwp2s", "unknown_speaker/lbbc2a"}
    with pytest.raises(DamagedSample) as info:
        items(dataset, verify=True)
    assert_names_the_damage(info.value, dataset, key, "content")
    assert "sha256 in index.parquet" in str(info.value)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert key not in keys(items(dataset, verify=True, handler="warn"))


def test_verify_on_a_sound_dataset_gives_the_same_items(grid_dataset):
    plain, checked = items(grid_dataset), items(grid_dataset, verify=True)
    assert len(plain) == len(checked) > 0
    for a, b in zip(plain, checked):
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[name], b[name]) for name in a if name != "__key__")


def test_missing_member_is_damage_not_an_old_build(dataset):
    key = drop_member(dataset, "mfcc.npy")
    with pytest.raises(DamagedSample) as info:
        items(dataset)
    assert_names_the_damage(info.value, dataset, key, "mfcc.npy")
    assert "is missing (the sample's json lists it)" in str(info.value)
    assert "written without it" not in str(info.value)


def test_missing_json_member_is_damage(dataset):
    key = drop_member(dataset, "json")
    with pytest.raises(DamagedSample) as info:
        items(dataset)
    assert_names_the_damage(info.value, dataset, key, "json")


@pytest.mark.parametrize("field", ["bbox.npy", "mfcc.npy", "video.mp4"])
def test_truncated_shard_is_an_error_and_warn_skips_the_rest_of_it(grid_dataset, dataset, field):
    """Cut inside a member that is read (mfcc, video) or skipped (bbox: seeked past, so the data
    ends before the next header): never a shard that silently ends early."""
    shard = train_shard(dataset)
    key, offset, size = member_of(shard, field)
    shard.write_bytes(shard.read_bytes()[: offset + size // 2])
    for fields in (FIELDS, ["mfcc.npy"]):
        with pytest.raises(DamagedSample) as info:
            list(talkdata.load(dataset, fields=fields, split="train", shuffle=False))
        assert f"shard {shard} is truncated" in str(info.value) and "talkdata verify" in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = items(dataset, handler="warn")
    assert keys(kept) == keys(items(grid_dataset)) - {key}
    assert any(f"shard {shard} is truncated" in str(w.message) for w in caught)


def test_missing_shard_with_warn_is_skipped(grid_dataset, dataset):
    train_shard(dataset).unlink()
    with pytest.raises(DamagedSample, match=r"listed in dataset.json is missing"):
        items(dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = items(dataset, handler="warn")
    assert keys(kept) == keys(items(grid_dataset)) - {"s2/swwp2s"}
    assert sum("is missing" in str(w.message) for w in caught) == 1


def test_function_handler_sees_the_error_and_can_stop(dataset):
    damage(dataset, "json", DAMAGES["json_garbage"][1])
    seen = []
    kept = items(dataset, handler=lambda err: seen.append(err) or True)
    assert len(seen) == 1 and isinstance(seen[0], DamagedSample) and len(keys(kept)) == 2
    # False ends the pass at the damaged sample (webdataset's ignore_and_stop)
    from webdataset.handlers import ignore_and_stop

    stopped = list(talkdata.load(dataset, fields=FIELDS, split="train", shuffle=False, handler=ignore_and_stop))
    assert stopped == []


def test_unknown_handler_is_a_clear_error(grid_dataset):
    with pytest.raises(UserError, match=r"handler must be 'raise', 'warn' or a function"):
        talkdata.load(grid_dataset, handler="ignore")


MANIFEST_DAMAGES = {
    "entry_without_keys": (lambda m: m.update(shards=[{}]), "shard entry 0 lacks path / split / samples"),
    "shards_not_a_list": (lambda m: m.update(shards={"a": 1}), "'shards' is not a list"),
    "splits_a_list": (lambda m: m.update(splits=[]), "'splits' is not a sample count per split"),
    "samples_not_a_count": (lambda m: m["shards"][0].update(samples="x"), "samples 'x'"),
    "absolute_path": (lambda m: m["shards"][0].update(path="/etc/passwd"), "not one inside the dataset folder"),
    "parent_path": (lambda m: m["shards"][0].update(path="../grid/x.tar"), "not one inside the dataset folder"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_DAMAGES))
def test_damaged_manifest_is_one_line_and_reads_nothing_outside(dataset, case):
    import json

    change, expected = MANIFEST_DAMAGES[case]
    manifest = json.loads((dataset / "dataset.json").read_text())
    change(manifest)
    (dataset / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError) as info:
        talkdata.load(dataset, split="all")
    message = str(info.value)
    assert f"{dataset / 'dataset.json'} is damaged" in message and expected in message
    assert f"talkdata verify {dataset}" in message and "\n" not in message


def test_a_shard_that_is_not_a_tar_is_damaged(dataset):
    shard = train_shard(dataset)
    shard.write_bytes(b"a text file, not a tar archive\n" * 64)  # 2 KB of text
    with pytest.raises(DamagedSample, match=r"is damaged \(bad tar header checksum at byte 0\)"):
        items(dataset)


def test_warn_handler_in_dataloader_workers(grid_dataset, dataset):
    """The handler travels to DataLoader worker processes: the damaged sample is skipped there."""
    from torch.utils.data import DataLoader

    from talkdata.loader import collate

    key = damage(dataset, "mfcc.npy", DAMAGES["npy_header"][1])
    data = talkdata.load(dataset, fields=FIELDS, split="all", shuffle=False, handler="warn")
    seen = set()
    for batch in DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate):
        seen.update(batch["__key__"])
    assert seen == keys(items(grid_dataset)) - {key}
    with pytest.raises(DamagedSample) as info:
        for _ in DataLoader(talkdata.load(dataset, fields=FIELDS, split="all", shuffle=False), batch_size=4,
                            num_workers=1, collate_fn=collate):
            pass
    assert_names_the_damage(info.value, dataset, key, "mfcc.npy")  # one line, as without workers
