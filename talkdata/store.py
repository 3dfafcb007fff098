"""Where a built dataset lives: a local folder or any fsspec URL (``s3://``, ``gs://``, ``https://``...).

Every command that reads a dataset (``verify``, ``diff``, ``inspect``, ``train``, ``talkdata.load``)
goes through :class:`Store`, so the same URL works everywhere. ``storage_options`` are fsspec's
keyword arguments for the URL's filesystem (``endpoint_url``, ``key``, ``secret``, ``anon``...);
fsspec's own configuration (``FSSPEC_CONFIG_DIR`` files, ``FSSPEC_S3_ENDPOINT_URL``-style
environment variables) applies too. A store that cannot be reached or refuses access becomes one
:class:`~talkdata.errors.UserError` naming the URL; a missing file stays ``FileNotFoundError`` for
the caller to explain.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import DISK_FULL_ERRNOS, UserError

#: top-level modules whose exceptions mean "the store could not be read" (network, auth, protocol)
_STORE_ERROR_MODULES = {"botocore", "aiobotocore", "aiohttp", "requests", "urllib3", "google", "gcsfs", "s3fs",
                        "fsspec", "adlfs", "azure", "huggingface_hub"}


def is_url(location: str) -> bool:
    return "://" in location


def parse_storage_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` items as fsspec keyword arguments.

    A dotted key nests (``client_kwargs.region_name=eu-west-1``); a value is read as JSON when it
    parses (``anon=true``, ``config_kwargs={"connect_timeout": 5}``), else kept as text.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--storage-option {item!r}: expected KEY=VALUE (e.g. endpoint_url=http://127.0.0.1:9000)")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        node = options
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--storage-option {item!r}: {part} is already set to a value")
        node[parts[-1]] = value
    return options


def _is_store_error(err: BaseException) -> bool:
    if isinstance(err, (OSError, TimeoutError)):
        return True
    return any(cls.__module__.split(".")[0] in _STORE_ERROR_MODULES for cls in type(err).__mro__)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def store_errors(location: str) -> Iterator[None]:
    """Turn a store's network / permission errors into one UserError (FileNotFoundError passes)."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, UserError):
        raise
    except ImportError as err:  # fsspec names the package a protocol needs ("Please install gcsfs ...")
        raise UserError(f"cannot open {location}: {_describe(err)}") from None
    except ValueError as err:
        if "protocol" not in str(err).lower():
            raise
        raise UserError(f"cannot open {location}: {_describe(err)} (fsspec's protocols: s3://, gs://, https://, "
                        "memory://, ...)") from None
    except TypeError as err:  # a storage option the filesystem does not take
        if "argument" not in str(err):
            raise
        raise UserError(f"cannot open {location}: {_describe(err)} (check the --storage-option names)") from None
    except PermissionError as err:
        if not is_url(location):  # a local folder: its permissions, not credentials
            raise UserError(f"access denied to {location}: {_describe(err)}") from None
        raise UserError(f"access denied to {location}: {_describe(err)} (check the credentials: "
                        "--storage-option key=... secret=..., or the store's usual environment variables)") from None
    except Exception as err:  # noqa: BLE001 - fsspec backends raise their own exception types
        if not _is_store_error(err) or getattr(err, "errno", None) in DISK_FULL_ERRNOS:
            raise  # a full local disk is said as such by the command line (free space, run again)
        raise UserError(f"cannot read {location}: {_describe(err)} (is the store reachable, and the URL and "
                        "--storage-option endpoint_url=... right?)") from None


class Store:
    """A dataset root: ``relative`` paths (always with ``/``, as in ``dataset.json``) under it."""

    def __init__(self, location: str | Path, storage_options: dict | None = None):
        import fsspec.core

        self.location = str(location)
        self.storage_options = dict(storage_options or {})
        with store_errors(self.location):
            if is_url(self.location):
                self.fs, self.root = fsspec.core.url_to_fs(self.location, **self.storage_options)
            else:
                if self.storage_options:
                    raise UserError("storage options apply to URLs (s3://..., gs://...), not to the local folder "
                                    f"{self.location}")
                self.fs, self.root = fsspec.core.url_to_fs(str(Path(self.location).absolute()))
        self.root = self.root.rstrip("/")
        self.remote = is_url(self.location)

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def url(self, relative: str) -> str:
        """How to show ``relative`` to the user (the URL or local path they gave, joined)."""
        if self.remote:
            return self.location.rstrip("/") + "/" + relative
        return str(Path(self.location) / relative)

    def open(self, relative: str) -> BinaryIO:
        with store_errors(self.url(relative)):
            return self.fs.open(self.path(relative), "rb")

    def read_bytes(self, relative: str) -> bytes:
        with store_errors(self.url(relative)):
            return self.fs.cat_file(self.path(relative))

    def is_file(self, relative: str) -> bool:
        with store_errors(self.url(relative)):
            return self.fs.isfile(self.path(relative))

    def is_dir(self) -> bool:
        with store_errors(self.location):
            return self.fs.isdir(self.root)

    def size(self, relative: str) -> int | None:
        """Bytes of the file, None when it is missing."""
        with store_errors(self.url(relative)):
            try:
                info = self.fs.info(self.path(relative))
            except FileNotFoundError:
                return None
        return int(info["size"]) if info.get("type") == "file" else None

    def sizes(self) -> dict[str, int]:
        """Every file under the root, relative, with its bytes (one listing)."""
        with store_errors(self.location):
            if not self.fs.isdir(self.root):
                return {}
            found = self.fs.find(self.root, detail=True)
        prefix = self.root + "/"
        return {p[len(prefix):]: int(info["size"]) for p, info in found.items()
                if p.startswith(prefix) and info.get("type") == "file"}

    @contextlib.contextmanager
    def _writing(self, relative: str) -> Iterator[str]:
        """The store path to write ``relative`` to (local parents created); a missing bucket is one error."""
        target = self.path(relative)
        with store_errors(self.url(relative)):
            if not self.remote:
                self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            try:
                yield target
            except FileNotFoundError as err:  # s3fs, gcsfs: the bucket does not exist
                raise UserError(f"cannot write {self.url(relative)}: {_describe(err)} (create the bucket first)"
                                ) from None

    def put_file(self, local: Path, relative: str) -> None:
        """Upload (or copy) the local file ``local`` to ``relative`` under the root."""
        with self._writing(relative) as target:
            self.fs.put_file(str(local), target)

    def put_bytes(self, data: bytes, relative: str) -> None:
        with self._writing(relative) as target:
            self.fs.pipe_file(target, data)

    def remove(self, relative: str) -> None:
        with store_errors(self.url(relative)):
            self.fs.rm_file(self.path(relative))

    def files(self) -> list[str]:
        """Every file under the root, relative, sorted."""
        return sorted(self.sizes())


def as_store(location: str | Path | Store, storage_options: dict | None = None) -> Store:
    return location if isinstance(location, Store) else Store(location, storage_options)


@contextlib.contextmanager
def fsspec_defaults(location: str, storage_options: dict | None) -> Iterator[None]:
    """Within the block, every fsspec filesystem of ``location``'s protocol gets ``storage_options``
    (fsspec's config), so code that takes a URL alone (a training loop, DataLoader workers forked
    inside the block) reaches the same store."""
    if not storage_options:
        yield
        return
    if not is_url(location):
        raise UserError(f"storage options apply to URLs (s3://..., gs://...), not to the local folder {location}")
    import fsspec.config
    import fsspec.core

    protocol = fsspec.core.split_protocol(location)[0]
    before = fsspec.config.conf.get(protocol)
    fsspec.config.conf[protocol] = {**(before or {}), **storage_options}
    try:
        yield
    finally:
        if before is None:
            fsspec.config.conf.pop(protocol, None)
        else:
            fsspec.config.conf[protocol] = before
