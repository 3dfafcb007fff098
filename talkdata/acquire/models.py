"""Model files with a published URL and checksum: a registry, and a verified fetch into the cache.

Only models whose official URL and checksum are public are listed. Today that is face-alignment's
2D-FAN-4 (the ``fan`` landmark backend): face-alignment (1adrianb/face-alignment,
``face_alignment/api.py``) downloads ``2DFAN4_1.6-c827573f02.zip`` from adrianbulat.com into the
torch hub cache with torch hub's convention, where the part of the file name after the last ``-`` is
the first hex digits of the file's sha256 (``torch.hub.download_url_to_file(..., hash_prefix=...)``).
The dlib models and the BlazeFace models ship inside PyPI packages and are not fetched here.

:func:`ensure` is called from the build's preflight (never from ``talkdata.face``, which takes a
path): when the file is missing it streams it with the resumable downloader (``.part`` file, Range
resume, retries, progress on stderr), checks the sha256 prefix and only then renames it into place.
A wrong file is moved aside (``NAME.bad-sha256``) and reported; without network the error names the
file and the folder to copy it into.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import BuildConfig
from ..errors import UserError
from ..face.landmarks import FAN_WEIGHTS, torch_hub_checkpoints
from ..progress import bar
from .http import (DEFAULT_POLICY, DownloadError, Job, RetryPolicy, VerificationError, fetch_one,
                           move_aside)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    name: str  # registry key
    file: str  # file name in the cache folder
    url: str  # official URL
    sha256_prefix: str  # published checksum (torch hub convention: leading hex digits of the sha256)
    origin: str  # where URL and checksum are published
    what: str  # for messages
    folder: str = "torch_hub"  # cache folder kind

    @property
    def public_url(self) -> str:
        return self.url


REGISTRY = {
    "fan-2d": ModelFile(
        "fan-2d", "2DFAN4_1.6-c827573f02.zip",
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4_1.6-c827573f02.zip", "c827573f02",
        "face-alignment's models_urls['1.6']['2DFAN-4'] (face_alignment/api.py)", "FAN weights"),
}


def fetch(model: ModelFile, folder: Path | None = None, *, url: str | None = None,
          policy: RetryPolicy = DEFAULT_POLICY, timeout: float = 60.0) -> Path:
    """Download ``model`` into ``folder`` (the torch hub cache) and verify it; ``url`` replaces the
    official URL (a mirror, or a test server). Returns the verified file's path."""
    folder = folder or torch_hub_checkpoints()
    final = folder / model.file
    staging = folder / (model.file + ".download")  # resumable through ``.download.part``
    label = f"model {model.file}"
    job = Job(label=label, url=url or model.url, public_url=url or model.public_url, dest=staging)
    downloading = bar(total=None, unit="B", unit_scale=True, desc=label, leave=False)

    def on_total(total: int) -> None:
        downloading.total = total
        downloading.refresh()

    try:
        fetched = fetch_one(job, on_bytes=downloading.update, on_total=on_total, policy=policy, timeout=timeout)
    except DownloadError as err:
        raise UserError(f"{model.what} not found: {final}, and the download failed ({err}); copy {model.file} "
                        f"from a machine with internet into {folder} or set TORCH_HOME") from None
    finally:
        downloading.close()
    if not fetched.hexdigest.startswith(model.sha256_prefix.lower()):
        kept = move_aside(staging, "sha256", final)
        raise VerificationError(f"checksum mismatch for {label}: expected a sha256 starting {model.sha256_prefix} "
                                f"(from {model.origin}), got {fetched.hexdigest}; the file is kept as {kept} "
                                "(nothing was deleted): remove it and run again", kept)
    staging.replace(final)
    return final


def ensure(name: str, folder: Path | None = None, **options) -> Path:
    """The model file, downloaded and verified first if it is not in ``folder`` yet."""
    model = REGISTRY[name]
    folder = folder or torch_hub_checkpoints()
    if (folder / model.file).is_file():
        return folder / model.file
    logger.info(f"downloading {model.file} from {options.get('url') or model.public_url} into {folder}")
    return fetch(model, folder, **options)


def ensure_for_config(config: BuildConfig) -> None:
    """Fetch what the configured backends need and do not find (the build's preflight)."""
    if config.face.backend == "fan" and importlib.util.find_spec("face_alignment") is not None:
        # without the extra installed, the backend's own error (install talkdata[fan]) comes first
        folder = torch_hub_checkpoints()
        if not any((folder / name).is_file() for name in FAN_WEIGHTS):
            ensure("fan-2d", folder)
