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
    s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=f"http://{host}:{port}").mkdir(BUCKET)
    s3fs.S3FileSystem.clear_instance_cache()
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


def test_denied_store_is_one_error_line(remote_grid, endpoint, grid_dataset, tmp_path):
    """moto checks credentials once its auth is switched on: the test keys are then unknown (403)."""
    never = tmp_path / "never.png"

    def set_auth(count: str) -> None:
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=30).read()

    set_auth("0")
    try:
        for args in (["verify", remote_grid], ["diff", remote_grid, remote_grid],
                     ["inspect", remote_grid, "--png", str(never)],
                     ["train", "atnet", "--data", remote_grid, "--steps", "1", "--no-progress",
                      "--out", str(tmp_path / "run")],
                     ["push", str(grid_dataset), remote_grid]):
            line = one_error_line(talkdata_cli(*args, *cli_options(endpoint)))
            assert line.startswith(f"error: access denied to {remote_grid}"), line
    finally:
        set_auth("inf")
    assert list(tmp_path.iterdir()) == []  # no figure, no run folder


def test_unreachable_store_is_one_error_line(grid_dataset, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    url = f"s3://{BUCKET}/grid"
    store = ["--storage-option", f"endpoint_url={closed}", "--storage-option", "key=testing",
             "--storage-option", "secret=testing", "--storage-option", "config_kwargs.retries.max_attempts=1"]
    for args in (["verify", url], ["diff", url, url], ["inspect", url, "--png", str(tmp_path / "never.png")],
                 ["train", "atnet", "--data", url, "--steps", "1", "--no-progress", "--out", str(tmp_path / "run")],
                 ["push", str(grid_dataset), url]):
        line = one_error_line(talkdata_cli(*args, *store))
        assert line.startswith(f"error: cannot read {url}") and "reachable" in line, line
    assert list(tmp_path.iterdir()) == []  # no figure, no run folder
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


def remote_files(endpoint: str, url: str) -> dict[str, int]:
    fs = s3fs.S3FileSystem(**options(endpoint))
    root = url.removeprefix("s3://")
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    s3fs.S3FileSystem.clear_instance_cache()
    return {path[len(root) + 1:]: int(info["size"]) for path, info in found.items()}


def local_files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*")
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(".work/")}


def test_push_publishes_a_build_that_every_command_reads(endpoint, grid_dataset):
    url = f"s3://{BUCKET}/pushed-grid"
    manifest = json.loads((grid_dataset / "dataset.json").read_text())
    first = talkdata_cli("push", str(grid_dataset), url, *cli_options(endpoint))
    assert first.returncode == 0, first.stderr
    files = local_files(grid_dataset)
    assert first.stdout.strip().startswith(f"ok: {url} holds version {manifest['version']}: {len(files)} file(s) uploaded")
    assert remote_files(endpoint, url) == files  # everything but the .work cache, byte counts equal
    assert talkdata_cli("verify", url, *cli_options(endpoint)).returncode == 0

    import talkdata

    remote = list(talkdata.load(url, fields=["pca.npy"], split="all", shuffle=False, storage_options=options(endpoint)))
    local = list(talkdata.load(grid_dataset, fields=["pca.npy"], split="all", shuffle=False))
    assert [s["__key__"] for s in remote] == [s["__key__"] for s in local] and len({s["__key__"] for s in local}) == 3
    for a, b in zip(remote, local):
        np.testing.assert_array_equal(np.asarray(a["pca"]), np.asarray(b["pca"]))

    again = talkdata_cli("push", str(grid_dataset), url, *cli_options(endpoint))
    assert again.returncode == 0, again.stderr  # only dataset.json is written again
    assert f"1 file(s) uploaded" in again.stdout and f"{len(files) - 1} already there" in again.stdout


def test_an_interrupted_push_resumes_and_exposes_no_manifest_before_the_end(endpoint, grid_dataset):
    from talkdata.publish import push

    url = f"s3://{BUCKET}/interrupted"
    sent = []

    def stop_after_two(name: str, _size: int) -> None:
        sent.append(name)
        if len(sent) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push(grid_dataset, url, options(endpoint), on_file=stop_after_two)
    partial = remote_files(endpoint, url)
    assert sorted(partial) == sorted(sent + [".talkdata-push.json"]) and "dataset.json" not in partial
    assert one_error_line(talkdata_cli("verify", url, *cli_options(endpoint))).startswith(
        f"error: {url}/dataset.json not found")
    resumed = push(grid_dataset, url, options(endpoint))
    assert resumed.skipped == 2 and resumed.uploaded == len(local_files(grid_dataset)) - 2
    assert remote_files(endpoint, url) == local_files(grid_dataset)  # the marker is gone
    assert talkdata_cli("verify", url, *cli_options(endpoint)).returncode == 0


def test_push_replaces_another_version_only_when_asked(endpoint, grid_dataset, crema_dataset):
    url = f"s3://{BUCKET}/replaced"
    assert talkdata_cli("push", str(grid_dataset), url, *cli_options(endpoint)).returncode == 0
    grid = json.loads((grid_dataset / "dataset.json").read_text())
    crema = json.loads((crema_dataset / "dataset.json").read_text())
    refused = one_error_line(talkdata_cli("push", str(crema_dataset), url, *cli_options(endpoint)))
    assert f"holds version {grid['version'][:12]} of {grid['name']}; pass --replace" in refused
    assert remote_files(endpoint, url) == local_files(grid_dataset)  # untouched

    replaced = talkdata_cli("push", str(crema_dataset), url, "--replace", *cli_options(endpoint))
    assert replaced.returncode == 0, replaced.stderr
    after = remote_files(endpoint, url)
    for entry in grid["shards"]:  # the old version's shards are gone unless the new one has the same path
        assert (entry["path"] in after) == (entry["path"] in local_files(crema_dataset))
    assert {entry["path"] for entry in crema["shards"]} <= set(after)
    ok = talkdata_cli("verify", url, *cli_options(endpoint))
    assert ok.returncode == 0 and crema["version"] in ok.stdout, ok.stdout + ok.stderr


def test_push_never_touches_foreign_content_or_publishes_a_damaged_build(endpoint, grid_dataset, tmp_path):
    fs = s3fs.S3FileSystem(**options(endpoint))
    fs.pipe_file(f"{BUCKET}/theirs/notes.txt", b"the user's own file")
    s3fs.S3FileSystem.clear_instance_cache()
    line = one_error_line(talkdata_cli("push", str(grid_dataset), f"s3://{BUCKET}/theirs", *cli_options(endpoint)))
    assert "holds 1 file(s) but no dataset.json: not a talkdata dataset" in line
    assert remote_files(endpoint, f"s3://{BUCKET}/theirs") == {"notes.txt": len(b"the user's own file")}

    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(grid_dataset, damaged, ignore=shutil.ignore_patterns(".work"))
    shard = damaged / json.loads((damaged / "dataset.json").read_text())["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    line = one_error_line(talkdata_cli("push", str(damaged), f"s3://{BUCKET}/damaged", *cli_options(endpoint)))
    assert "does not match its dataset.json" in line and "checksum mismatch" in line
    assert remote_files(endpoint, f"s3://{BUCKET}/damaged") == {}
    assert "a dataset built by talkdata?" in one_error_line(talkdata_cli("push", str(tmp_path / "nothing"),
                                                                           f"s3://{BUCKET}/x", *cli_options(endpoint)))
    no_bucket = one_error_line(talkdata_cli("push", str(grid_dataset), "s3://no-such-bucket/grid", *cli_options(endpoint)))
    assert no_bucket.startswith("error: cannot write s3://no-such-bucket/grid/") and "create the bucket" in no_bucket


def test_build_out_url_is_one_error_line_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(talkdata_cli("build", "grid", "--source", str(tmp_path), "--out", "s3://bucket/grid"))
    assert line.startswith("error: --out s3://bucket/grid: a build writes to a local folder") and "talkdata push" in line
    demo = one_error_line(talkdata_cli("demo", "--out", "s3://bucket/demo"))
    assert demo.startswith("error: --out s3://bucket/demo: a build writes to a local folder")
    train = one_error_line(talkdata_cli("train", "atnet", "--data", str(tmp_path), "--out", "s3://bucket/run"))
    assert train == "error: --out s3://bucket/run: the run folder must be a local folder (checkpoints are written, then renamed)"
    assert list(tmp_path.iterdir()) == []
