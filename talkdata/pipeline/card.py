"""The dataset card ``OUT/README.md``: a YAML header the Hugging Face Hub reads, then statistics.

The header declares the splits' shard files and every field's type (``dataset_info.features``), so
``datasets.load_dataset(OUT)`` needs no type inference; ``croissant.json`` beside it describes the
same build in Croissant. Both are written from the manifest and the statistics collected while
packing (:mod:`talkdata.pipeline.pack_stats`; no shard is read back), outside the version.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..files import write_atomic
from .croissant import write_croissant
from .hub_features import hub_features_yaml
from .pack_stats import PackStats


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


#: license identifiers the Hugging Face Hub knows, by how the recipes' license text starts
_HUB_LICENSES = (("CC BY 4.0", "cc-by-4.0"), ("ODbL", "odbl"))


def hub_license(text: str) -> str:
    """The Hub's license id for a recipe's license text (``other`` plus ``license_name`` otherwise)."""
    for prefix, identifier in _HUB_LICENSES:
        if text.startswith(prefix) and "copyright of the videos" not in text:
            return identifier
    return "other"


def license_link(recipe: dict) -> str:
    """Where the license of a build with license ``other`` is stated: the corpus homepage, or the
    card's own License section (a ``videos`` build of the user's own files)."""
    return recipe.get("homepage") or "README.md#license"


def write_card(out: Path, manifest: dict, stats: PackStats, shape_model=None) -> None:
    """``OUT/README.md``, ``OUT/card/*.png`` and ``OUT/croissant.json`` from the manifest and the
    statistics the pack collected (``stats``); no shard is read."""
    total = sum(s["samples"] for s in manifest["splits"].values())
    recipe = manifest["recipe"]
    splits = [s for s, info in manifest["splits"].items() if info["samples"]]
    license_id = hub_license(recipe["license"])
    header = ["---", f"pretty_name: {recipe['title']!r}", f"license: {license_id}"]
    if license_id == "other":
        header.append(f"license_name: {recipe['license']!r}")
        header.append(f"license_link: {license_link(recipe)!r}")
    header += ["task_categories:", "  - text-to-video", "  - audio-to-audio",
              "tags:", "  - talking-face", "  - webdataset", "  - talkdata", "size_categories:",
              f"  - {_size_category(total)}", "configs:", "  - config_name: default", "    data_files:"]
    for split in splits:
        header += [f"      - split: {split}", f"        path: shards/{split}/*.tar"]
    try:
        types = stats.field_types() if stats.total else {}
    except ValueError:  # a field with two types (a corpus module bug): readers infer, as without a card
        types = {}
    if types:
        header += ["dataset_info:", "  config_name: default"] + hub_features_yaml(types)
    header += [f"talkdata_version_id: {manifest['version']}", "---", ""]
    durations = [value for counts in stats.durations.values() for value in counts]
    seconds = sum(value * count for counts in stats.durations.values() for value, count in counts.items())
    body = [
        f"# {recipe['title']} (talkdata build)",
        "",
        recipe["description"],
        "",
        f"- version id: `{manifest['version']}`",
        f"- license: {recipe['license']}; homepage: {recipe.get('homepage') or '-'}",
        f"- samples: {total} ("
        + ", ".join(f"{s} {manifest['splits'][s]['samples']}" for s in manifest["splits"]) + ")",
        f"- total duration: {seconds:.1f} s; clip length {min(durations, default=0):.2f}-"
        f"{max(durations, default=0):.2f} s",
        f"- rejected clips: {manifest['rejects']['count']}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(manifest['rejects']['by_reason'].items())) + ")"
           if manifest['rejects']['count'] else ""),
        f"- audio features: {', '.join(manifest['audio_features']) or 'none'}",
    ]
    shape = manifest.get("shape_model")
    if shape:
        body.append(f"- shape model: {shape['components']} PCA components, explained variance "
                    f"{shape['explained_variance_ratio_first_6']:.3f} (first 6), "
                    f"{shape['explained_variance_ratio_all']:.3f} (all {shape['components']})")
    modes = out / "card" / "shape_modes.png"
    if shape_model is None:
        modes.unlink(missing_ok=True)  # the figure of an earlier build of this folder
    else:
        render_shape_modes(modes, shape_model)
        body += ["", "Identity-removed landmarks (`lmk_norm.npy`) are coded in this basis (`pca.npy`):", "",
                 "![mean shape and the first PCA modes at +-2 standard deviations](card/shape_modes.png)"]
    from .card_figures import write_card_figures  # matplotlib: only when a card is written

    body += write_card_figures(out, manifest, stats)  # contact sheet, histograms, rejects (card/*.png)
    body += ["", "## License", "", f"{recipe['license']}" + (f" (see {recipe['homepage']})" if recipe.get("homepage")
                                                              else ": the clips are the builder's own; state their "
                                                              "license here before sharing this dataset."),
             "", "Built with [talkdata](https://pypi.org/project/talkdata/); `talkdata verify` checks this folder "
             "against `dataset.json`; `croissant.json` describes it in Croissant.", ""]
    write_croissant(out, manifest, types)
    write_atomic(out / "README.md", "\n".join(header + body).encode())


def render_shape_modes(path: Path, model, n_modes: int = 3) -> None:
    """Mean shape and the first PCA modes at -2 / +2 standard deviations (deterministic PNG)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..face.shape import reconstruct

    basis = model.basis
    n_modes = min(n_modes, basis.n_components)
    fig = Figure(figsize=(2.2 * (n_modes + 1), 2.6), dpi=100)  # on an Agg canvas; pyplot is not imported
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_modes + 1)
    zero = np.zeros((1, basis.n_components), dtype=np.float32)
    mean = reconstruct(zero, basis)[0]
    panels = [("mean shape", [(mean, "k")])]
    for k in range(n_modes):
        panels.append((f"mode {k + 1} ({basis.explained_variance_ratio[k]:.0%})", []))
        for sign, colour in ((-2, "tab:blue"), (2, "tab:red")):
            code = zero.copy()
            code[0, k] = sign * np.sqrt(basis.explained_variance[k])
            panels[-1][1].append((reconstruct(code, basis)[0], colour))
    for axis, (title, shapes) in zip(axes, panels):
        for shape, colour in shapes:
            axis.scatter(shape[:, 0], shape[:, 1], s=4, c=colour)
        axis.set_title(title, fontsize=8)
        axis.set_aspect("equal")
        axis.invert_yaxis()
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle("landmark shape model (blue -2 sd, red +2 sd)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())
