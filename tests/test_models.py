"""Model download (talkdata.acquire.models) against a loopback HTTP server serving stand-in files: a verified
download lands in the torch hub cache, a wrong checksum is moved aside and reported, an interrupted
transfer resumes with Range, and without a server the error names the file and the folder."""

from __future__ import annotations

import hashlib
import socket

import pytest

import http_fixture as hf
from talkdata.acquire import models
from talkdata.config import BuildConfig, resolve
from talkdata.errors import UserError
from talkdata.acquire.http import RetryPolicy, VerificationError

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)
BODY = bytes(range(256)) * 4096  # 1 MiB stand-in for the weights


def _stand_in(prefix: str | None = None) -> models.ModelFile:
    digest = hashlib.sha256(BODY).hexdigest()
    return models.ModelFile("stand-in", f"stand_in-{digest[:10]}.zip", "https://example.invalid/stand_in.zip",
                            prefix or digest[:10], "this test", "stand-in weights")


def test_registry_entry_is_face_alignments_published_file():
    fan = models.REGISTRY["fan-2d"]
    assert fan.url == "https://www.adrianbulat.com/downloads/python-fan/2DFAN4_1.6-c827573f02.zip"
    assert fan.file.endswith(f"-{fan.sha256_prefix}.zip")  # torch hub's hash-prefix convention


def test_download_verifies_and_lands_in_the_folder(tmp_path, monkeypatch):
    model = _stand_in()
    monkeypatch.setitem(models.REGISTRY, "stand-in", model)
    with hf.FixtureServer() as srv:
        srv.add("/stand_in.zip", BODY)
        path = models.ensure("stand-in", tmp_path, url=srv.url + "/stand_in.zip", policy=FAST)
        again = models.ensure("stand-in", tmp_path, url=srv.url + "/stand_in.zip", policy=FAST)
        hits = srv.hits_for("/stand_in.zip")
    assert path == again == tmp_path / model.file
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.file]  # no .part / staging left
    assert len(hits) == 1  # the second call found the file


def test_wrong_checksum_is_moved_aside_and_reported(tmp_path):
    model = _stand_in(prefix="0000000000")
    with hf.FixtureServer() as srv:
        srv.add("/stand_in.zip", BODY)
        with pytest.raises(VerificationError) as info:
            models.fetch(model, tmp_path, url=srv.url + "/stand_in.zip", policy=FAST)
    message = str(info.value)
    assert "expected a sha256 starting 0000000000" in message and hashlib.sha256(BODY).hexdigest() in message
    assert not (tmp_path / model.file).exists()
    kept = tmp_path / f"{model.file}.bad-sha256"
    assert kept.read_bytes() == BODY and str(kept) in message


def test_interrupted_transfer_resumes_with_range(tmp_path):
    model = _stand_in()
    with hf.FixtureServer() as srv:
        srv.add("/stand_in.zip", BODY, drop_after=300_000)
        path = models.fetch(model, tmp_path, url=srv.url + "/stand_in.zip", policy=FAST)
        hits = srv.hits_for("/stand_in.zip")
    assert path.read_bytes() == BODY
    assert len(hits) == 2 and hits[0].range is None and hits[1].range == f"bytes={hits[0].sent}-"
    assert sum(h.sent for h in hits) == len(BODY)  # nothing fetched twice


def test_offline_error_names_the_file_and_the_folder(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fan = models.REGISTRY["fan-2d"]
    with pytest.raises(UserError) as info:
        models.fetch(fan, tmp_path, url=f"http://127.0.0.1:{port}/{fan.file}", policy=FAST, timeout=2)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"FAN weights not found: {tmp_path / fan.file}")
    assert f"copy {fan.file} from a machine with internet into {tmp_path}" in message
    assert not (tmp_path / fan.file).exists()


def test_build_preflight_fetches_fan_weights_only_for_the_fan_backend(tmp_path, monkeypatch):
    """The preflight asks for the FAN file when face.backend=fan (and face-alignment is installed),
    and not for the default dlib backend."""
    calls = []
    monkeypatch.setattr(models, "ensure", lambda name, folder=None, **kw: calls.append((name, folder)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    models.ensure_for_config(BuildConfig())
    assert calls == []
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: object())
    models.ensure_for_config(resolve({}, "test", {"face.backend": "fan"}))
    assert calls == [("fan-2d", tmp_path / "torch" / "hub" / "checkpoints")]
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "2DFAN4-cd938726ad.zip").write_bytes(b"older copy")
    models.ensure_for_config(resolve({}, "test", {"face.backend": "fan"}))
    assert len(calls) == 1  # any of face-alignment's file names counts as present
