"""The dataset card ``OUT/README.md``: a YAML header the Hugging Face Hub reads, then statistics."""

from __future__ import annotations

from pathlib import Path

from ..manifest import write_atomic


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def write_card(out: Path, manifest: dict, index_rows: list[dict]) -> None:
    total = sum(s["samples"] for s in manifest["splits"].values())
    recipe = manifest["recipe"]
    splits = [s for s, info in manifest["splits"].items() if info["samples"]]
    header = ["---", f"pretty_name: {recipe['title']!r}", f"license: other",
              f"license_name: {recipe['license']!r}", "task_categories:", "  - text-to-video", "  - audio-to-audio",
              "tags:", "  - talking-face", "  - webdataset", "  - talkdata", "size_categories:",
              f"  - {_size_category(total)}", "configs:", "  - config_name: default", "    data_files:"]
    for split in splits:
        header += [f"      - split: {split}", f"        path: shards/{split}/*.tar"]
    header += [f"talkdata_version_id: {manifest['version']}", "---", ""]
    durations = [row["duration"] for row in index_rows]
    body = [
        f"# {recipe['title']} (talkdata build)",
        "",
        recipe["description"],
        "",
        f"- version id: `{manifest['version']}`",
        f"- license: {recipe['license']}; homepage: {recipe.get('homepage') or '-'}",
        f"- samples: {total} ("
        + ", ".join(f"{s} {manifest['splits'][s]['samples']}" for s in manifest["splits"]) + ")",
        f"- total duration: {sum(durations):.1f} s; clip length {min(durations, default=0):.2f}-"
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
    body += ["", "Built with [talkdata](https://pypi.org/project/talkdata/); `talkdata verify` checks this folder "
             "against `dataset.json`.", ""]
    write_atomic(out / "README.md", "\n".join(header + body).encode())
