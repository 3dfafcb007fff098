"""Build integration: the folder ``talkdata build`` indexes (``--source``, else the data root after
downloading what is missing), and the corpus module's own check of that folder.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from ..errors import UserError
from ..recipe import Recipe
from ..store import is_url
from .download import DEFAULT_JOBS, download, has_download

logger = logging.getLogger(__name__)


def resolve_source(recipe: Recipe, source: str | None, only: list[str] | None = None, mirror: str | None = None,
                   jobs_n: int = DEFAULT_JOBS) -> Path:
    """``--source`` when given; else ``DATA_ROOT/NAME`` after downloading what is missing."""
    if source is not None:
        if only is not None or mirror is not None:
            raise UserError("--only and --mirror choose what to download; they cannot be used with --source")
        if is_url(source):  # Path() would make "s3://b/x" the folder "s3:/b/x"
            raise UserError(f"--source {source}: a build reads a local folder (every clip is decoded from it); copy "
                            "or mount the corpus there first, or leave out --source to download it into the data root")
        return Path(source).expanduser()
    if not has_download(recipe):
        raise UserError(f"recipe {recipe.name} has no download: give the folder with --source FOLDER "
                        f"({recipe.data.get('access', '')})")
    report = download(recipe, only, mirror, jobs_n, retry_skipped=False)
    if report.fetched or report.extracted or report.skipped:
        logger.info(report.summary())
    return report.root


def check_source(recipe: Recipe, root: Path) -> None:
    """Run the corpus module's ``check_source(root)``, when it has one (CREMA-D: git-lfs pointer files)."""
    hook = getattr(importlib.import_module(recipe.data["index"]), "check_source", None)
    if callable(hook):
        hook(root)

