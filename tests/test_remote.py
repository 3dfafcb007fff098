"""Datasets on object storage: every command that reads a dataset takes an ``s3://`` URL.

A real S3 API server (moto's server mode) is started by these tests on 127.0.0.1 and stopped at
the end; the GRID samples are uploaded to it and read back through ``talkdata.load``, ``train``,
``verify``, ``diff`` and ``inspect``, with the endpoint given as storage options. A denied and an
unreachable store each give one ``error:`` line and exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from talkdata.cli import main

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra (pip install -e '.[test]')")
s3fs = pytest.importorskip("s3fs", reason="s3fs is in the test extra (pip install -e '.[test]')")

BUCKET = "talk"
CREDENTIALS = {"key": "testing", "secret": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def options(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, **CREDENTIALS}


def cli_options(endpoint: str) -> list[str]:
    return ["--storage-option", f"endpoint_url={endpoint}", "--storage-option", "key=testing",
            "--storage-option", "secret=testing"]


def upload(endpoint: str, folder: Path, prefix: str, damaged: str | None = None) -> str:
    """``folder`` (without its .work cache) uploaded to s3://talk/PREFIX; the file ``damaged`` gets its
    middle byte flipped on the way."""
    fs = s3fs.S3FileSystem(**options(endpoint))
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not relative.startswith(".work/"):
            data = path.read_bytes()
            if relative == damaged:
                data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
            fs.pipe_file(f"{BUCKET}/{prefix}/{relative}", data)
    s3fs.S3FileSystem.clear_instance_cache()
    return f"s3://{BUCKET}/{prefix}"


@pytest.fixture(scope="module")
def remote_grid(endpoint, grid_dataset) -> str:
    """The GRID build uploaded to s3://talk/grid."""
    return upload(endpoint, grid_dataset, "grid")


def talkdata_cli(*args: str) -> subprocess.CompletedProcess:
    """The command line, run in this process (the imports are paid once: the suite stays short)."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_load_reads_the_same_items_from_s3_as_from_the_folder(remote_grid, endpoint, grid_dataset):
    import talkdata

    fields = ["mfcc.npy", "pca.npy"]
    remote = list(talkdata.load(remote_grid, fields=fields, split="all", shuffle=False,
                                storage_options=options(endpoint)))
    local = list(talkdata.load(grid_dataset, fields=fields, split="all", shuffle=False))
    assert len(remote) == len(local) > 0
    for a, b in zip(remote, local):
        assert a["__key__"] == b["__key__"]
        for name in ("mfcc", "pca"):
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))


def test_verify_diff_and_inspect_take_the_url(remote_grid, endpoint, grid_dataset, tmp_path):
    manifest = json.loads((grid_dataset / "dataset.json").read_text())
    ok = talkdata_cli("verify", remote_grid, *cli_options(endpoint))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == (f"ok: {len(manifest['shards'])} shards, 3 samples, version {manifest['version']}")

    same = talkdata_cli("diff", remote_grid, str(grid_dataset), "--json", *cli_options(endpoint))
    assert same.returncode == 0, same.stderr
    data = json.loads(same.stdout)
    assert data["identical"] is True and data["a"]["path"] == remote_grid
    assert data["samples"]["counts"]["unchanged"] == 3

    key = "s1/bbaf2n"
    remote_png, local_png = tmp_path / "remote.png", tmp_path / "local.png"
    shown = talkdata_cli("inspect", remote_grid, "--key", key, "--png", str(remote_png), *cli_options(endpoint))
    assert shown.returncode == 0, shown.stderr
    assert talkdata_cli("inspect", str(grid_dataset), "--key", key, "--png", str(local_png)).returncode == 0
    assert remote_png.read_bytes() == local_png.read_bytes()
    sheet = talkdata_cli("inspect", remote_grid, "--png", str(tmp_path / "sheet.png"), *cli_options(endpoint))
    assert sheet.returncode == 0 and (tmp_path / "sheet.png").stat().st_size > 0, sheet.stderr

    # a copy with one damaged shard: verify on the URL finds it
    shard = manifest["shards"][0]["path"]
    damaged = upload(endpoint, grid_dataset, "grid-damaged", damaged=shard)
    bad = talkdata_cli("verify", damaged, *cli_options(endpoint))
    assert bad.returncode == 1
    assert f"checksum mismatch: {shard} (sha256 differs from the manifest)" in bad.stdout.splitlines()


def test_train_on_s3(remote_grid, endpoint, tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    run = tmp_path / "run"
    result = talkdata_cli("train", "atnet", "--data", remote_grid, "--steps", "2", "--out", str(run),
                          "--no-progress", "--set", "batch_size=2", *cli_options(endpoint))
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == remote_grid
    assert (run / "checkpoint.pt").stat().st_size > 0


def test_denied_store_is_one_error_line(remote_grid, endpoint):
    """moto checks credentials once its auth is switched on: the test keys are then unknown (403)."""

    def set_auth(count: str) -> None:
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=30).read()

    set_auth("0")
    try:
        for args in (["verify", remote_grid], ["diff", remote_grid, remote_grid],
                     ["inspect", remote_grid, "--png", "never.png"],
                     ["train", "atnet", "--data", remote_grid, "--steps", "1", "--no-progress"]):
            line = one_error_line(talkdata_cli(*args, *cli_options(endpoint)))
            assert line.startswith(f"error: access denied to {remote_grid}"), line
    finally:
        set_auth("inf")
    assert not Path("never.png").exists()


def test_unreachable_store_is_one_error_line():
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    url = f"s3://{BUCKET}/grid"
    store = ["--storage-option", f"endpoint_url={closed}", "--storage-option", "key=testing",
             "--storage-option", "secret=testing", "--storage-option", "config_kwargs.retries.max_attempts=1"]
    for args in (["verify", url], ["diff", url, url], ["inspect", url, "--png", "never.png"],
                 ["train", "atnet", "--data", url, "--steps", "1", "--no-progress"]):
        line = one_error_line(talkdata_cli(*args, *store))
        assert line.startswith(f"error: cannot read {url}") and "reachable" in line, line
    import talkdata
    from talkdata.errors import UserError

    with pytest.raises(UserError, match="cannot read s3://talk/grid"):
        talkdata.load(url, storage_options={"endpoint_url": closed, **CREDENTIALS,
                                            "config_kwargs": {"retries": {"max_attempts": 1}}})


def test_storage_option_syntax():
    from talkdata.store import parse_storage_options
    from talkdata.errors import UserError

    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=true",
                                  "client_kwargs.region_name=eu-west-1", "config_kwargs={\"connect_timeout\": 5}"]) == {
        "endpoint_url": "http://127.0.0.1:9000", "anon": True, "client_kwargs": {"region_name": "eu-west-1"},
        "config_kwargs": {"connect_timeout": 5}}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_storage_options(["endpoint_url"])
    result = talkdata_cli("verify", "some/folder", "--storage-option", "anon=true")
    assert "storage options apply to URLs" in one_error_line(result)
    unknown = talkdata_cli("verify", "nosuchprotocol://bucket/grid")
    assert one_error_line(unknown).startswith("error: cannot open nosuchprotocol://bucket/grid: Protocol not known")
    misnamed = talkdata_cli("verify", "s3://bucket/grid", "--storage-option", "endpoint=http://127.0.0.1:9")
    assert "unexpected keyword argument 'endpoint'" in one_error_line(misnamed)
