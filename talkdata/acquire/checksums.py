"""Remote checksum lists: a source's published sizes and checksums (Zenodo's record API for GRID)."""

from __future__ import annotations

import json
import logging
from typing import Mapping

from . import http
from .access import mirror_credential
from .plan import mirror_url

logger = logging.getLogger(__name__)


def parse_zenodo_record(data: bytes) -> dict[str, dict]:
    """Zenodo's record API answer -> ``{file name: {"md5": hex, "bytes": n}}``."""
    record = json.loads(data)
    entries = record.get("files", [])
    if isinstance(entries, dict):  # InvenioRDM /files form
        entries = entries.get("entries", [])
        entries = list(entries.values()) if isinstance(entries, dict) else entries
    table = {}
    for entry in entries:
        key = entry.get("key") or entry.get("filename")
        algo, _, value = str(entry.get("checksum", "")).partition(":")
        if not key or algo not in ("md5", "sha256") or not value:
            continue
        table[key] = {algo: value, **({"bytes": int(entry["size"])} if entry.get("size") is not None else {})}
    if not table:
        raise ValueError("no files with checksums in the answer")
    return table


CHECKSUM_FORMATS = {"zenodo": ("the Zenodo record API", parse_zenodo_record)}


def remote_checksums(spec: Mapping, mirror: str | None) -> tuple[dict, str]:
    source = spec.get("checksums")
    if not source:
        return {}, ""
    origin, parse = CHECKSUM_FORMATS[source["format"]]
    url = mirror_url(source["url"], mirror)
    try:
        login = mirror_credential(mirror)
        headers = {"Authorization": login.basic_header()} if login is not None else None
        table = parse(http.get_bytes(url, url, headers, label="checksum list", policy=http.DEFAULT_POLICY))
    except (http.DownloadError, ValueError, KeyError, TypeError) as err:
        logger.warning(f"note: could not read the checksums from {url} ({err}); using the values in the recipe")
        return {}, ""
    return table, f"{origin} ({url})"

