"""``talkdata inspect``: write the inspection figure / page of one sample, or a contact sheet."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..figures.render import png_bytes
from ..figures.sheet import PER_SPLIT
from ..files import write_atomic
from ..media.mp4_frames import decode_video
from .contact_sheet import contact_sheet
from .dataset import check_dataset, decoded, load_sample
from .sample_figure import render_sample, strip_indices


def _write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except (FileExistsError, NotADirectoryError):  # a folder on the way is a file
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise UserError(f"cannot write {path}: {blocker} is a file, not a folder") from None
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def inspect_dataset(out: str | Path, key: str | None = None, png: str | Path | None = None,
                    html: str | Path | None = None, frames: int = 8, per_split: int = PER_SPLIT,
                    seed: int = 0, storage_options: dict | None = None) -> list[str]:
    """Write the requested files; returns one line per file written.

    With ``key``: the sample's figure (``png``) and/or page (``html``), ``frames`` frames in the
    strip. Without: a contact sheet (``png``) of ``per_split`` seeded random samples per split.
    ``out`` is a dataset folder or an fsspec URL (``storage_options``: fsspec's options for it).
    """
    if png is None and html is None:
        raise UserError("nothing to write: give --png FILE and/or --html FILE")
    if key is None and html is not None:
        raise UserError("--html needs --key KEY: the page shows one sample (without --key, --png writes a contact sheet)")
    out = check_dataset(out, storage_options)
    lines = []
    if key is None:
        image = contact_sheet(out, per_split, seed)
        path = _write(png, png_bytes(image))
        lines.append(f"wrote {path}: contact sheet, {image.shape[1]}x{image.shape[0]} px")
        return lines
    sample = load_sample(out, key)
    indices = strip_indices(sample.frames, frames)
    strip = decoded(sample.shard, key, "video.mp4", lambda data: decode_video(data, indices), sample.video, out)
    figure = render_sample(sample, dict(zip(indices, strip)), len(indices))
    size = f"{figure.image.shape[1]}x{figure.image.shape[0]} px"
    if png is not None:
        path = _write(png, png_bytes(figure.image))
        lines.append(f"wrote {path}: {key}, frames {', '.join(map(str, indices))} of {sample.frames}, {size}")
    if html is not None:
        from .html_page import sample_html

        path = _write(html, sample_html(sample, figure).encode())
        lines.append(f"wrote {path}: {key}, {sample.frames} frames with slider and playable clip")
    return lines
