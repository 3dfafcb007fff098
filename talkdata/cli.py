"""The ``talkdata`` command line: a thin click layer over library functions."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import click

from .config import known_keys, parse_set_options
from .errors import UserError


class _Command(click.Command):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; run the same command again to resume", err=True)
            ctx.exit(130)
        except OSError as err:
            if err.errno == 28:  # ENOSPC
                click.echo(f"error: disk full while writing {err.filename or ''}; free space and run the same "
                           "command again to resume", err=True)
                ctx.exit(2)
            raise


class _Group(click.Group):
    command_class = _Command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="talkdata")
def main() -> None:
    """Turn talking-face corpora into versioned, training-ready WebDataset shards."""


@main.command()
@click.argument("name", required=False)
def recipes(name: str | None) -> None:
    """List the bundled recipes, or show one recipe in full."""
    from .recipe import load_recipe, recipe_names

    if name is None:
        for recipe_name in recipe_names():
            data = load_recipe(recipe_name).data
            click.echo(f"{recipe_name:10s} {data['title']}")
            click.echo(f"{'':10s} size: {data['size']}; license: {data['license']}")
            click.echo(f"{'':10s} access: {data['access']}")
        return
    recipe = load_recipe(name)
    data = recipe.data
    for field in ("title", "description", "license", "homepage", "citation", "size", "access", "layout"):
        if data.get(field):
            click.echo(f"{field}: {data[field]}")
    for protocol, spec in sorted(recipe.protocols.items()):
        click.echo(f"split protocol {protocol}: {spec['description']}")
    if recipe.defaults:
        click.echo("defaults: " + json.dumps(recipe.defaults, sort_keys=True))


def _build_options(func):
    options = [
        click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Output dataset folder."),
        click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Local dask worker processes; 0 runs in this process."),
        click.option("--scheduler", default=None, help="Address of an existing dask scheduler (tcp://host:8786)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set crop.size=128 (repeatable; --list-keys shows all)."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Process only the first N clips."),
        click.option("--retry-failed", is_flag=True, help="Process again the clips that failed with an error."),
        click.option("--shape-model", type=click.Path(dir_okay=False), default=None,
                     help="Use this stats/shape_model.npz instead of fitting one."),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _list_keys(ctx, _param, value):
    if value:
        from .config import DEFAULTS

        for key in known_keys():
            node = DEFAULTS
            for part in key.split("."):
                node = node[part]
            click.echo(f"{key} = {json.dumps(node)}")
        ctx.exit(0)


@main.command()
@click.argument("recipe")
@click.option("--source", type=click.Path(), required=True, help="Folder holding the corpus in its official layout.")
@_build_options
@click.option("--list-keys", is_flag=True, expose_value=False, is_eager=True, callback=_list_keys,
              help="List every config key with its default and exit.")
def build(recipe, source, out, workers, scheduler, sets, limit, retry_failed, shape_model, no_progress):
    """Build WebDataset shards from the corpus RECIPE found in --source."""
    from .pipeline.build import build as run_build

    report = run_build(recipe, source, out, parse_set_options(sets), workers=workers, scheduler=scheduler,
                       limit=limit, retry_failed=retry_failed, shape_model=shape_model, progress=not no_progress)
    click.echo(report.summary())


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="talkdata-demo", show_default=True,
              help="Folder for the demo datasets.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def demo(out, workers, no_progress):
    """Build the real sample clips bundled with talkdata (GRID, CREMA-D) into --out."""
    from .pipeline.build import build as run_build

    samples = resources.files("talkdata").joinpath("demo_data")
    for recipe, folder in (("grid", "grid"), ("crema-d", "crema_d")):
        target = Path(out) / recipe
        click.echo(f"== {recipe}: {samples / folder} -> {target}")
        report = run_build(recipe, str(samples / folder), target, workers=workers, progress=not no_progress)
        click.echo(report.summary())


@main.command()
@click.argument("dataset", type=click.Path())
def verify(dataset):
    """Check every shard and artifact of DATASET against its dataset.json (exit 1 on any problem)."""
    from .manifest import load_manifest, verify as run_verify

    manifest = load_manifest(dataset)
    problems = run_verify(dataset)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {dataset}", err=True)
        sys.exit(1)
    total = sum(s["samples"] for s in manifest["splits"].values())
    click.echo(f"ok: {len(manifest['shards'])} shards, {total} samples, version {manifest['version']}")


if __name__ == "__main__":  # pragma: no cover
    main()
