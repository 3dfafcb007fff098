"""The ``talkdata`` command line: a thin click layer over library functions."""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import re
import sys
from importlib import resources
from pathlib import Path

import click

from .config import list_keys, parse_set_options
from .errors import DISK_FULL_ERRNOS, UserError, disk_full_error
from .progress import hide_bars, terminal


class _Command(click.Command):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo(_interrupted(ctx.command.name), err=True)
            ctx.exit(130)
        except EOFError as err:  # a file or stream that ended early (click would print "Aborted!" and exit 1)
            detail = _one_line(str(err))
            click.echo(f"error: unexpected end of data{f' ({detail})' if detail else ''}: a file this command read is "
                       "empty or truncated", err=True)
            ctx.exit(2)
        except OSError as err:
            if err.errno in DISK_FULL_ERRNOS:
                kept = _KEPT_AFTER_DISK_FULL.get(ctx.command.name, "what was finished is kept")
                click.echo(f"error: {disk_full_error(err, kept)}", err=True)
                ctx.exit(2)
            if err.errno in _DENIED_ERRNOS and err.filename:
                what = f"move {err.filename} to {err.filename2}" if err.filename2 else f"access {err.filename}"
                click.echo(f"error: cannot {what} ({err.strerror}); fix the permissions (or the file system's) and "
                           "run the same command again", err=True)
                ctx.exit(2)
            raise


#: a file or folder the command cannot read or write: permissions, a read-only file system
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}

#: what each resumable command keeps when the disk fills up (said in its one error line); the other
#: commands (verify, inspect, diff, recipes) keep nothing and have nothing to resume
_KEPT_AFTER_DISK_FULL = {"build": "finished clips are kept", "demo": "finished clips are kept",
                         "download": "verified files are kept", "push": "files already pushed are kept",
                         "train": "the last checkpoint is kept"}


def _interrupted(command: str) -> str:
    """The line Ctrl-C prints: only a resumable command is told to run again."""
    return "interrupted; run the same command again to resume" if command in _KEPT_AFTER_DISK_FULL else "interrupted"


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: options of ``talkdata`` itself, which users also put after the command name
_MAIN_OPTIONS = ("-q", "--quiet", "-v", "--verbose")


class _Group(click.Group):
    """Every usage or value error click finds (unknown option, out-of-range number, missing argument)
    is printed as one ``error: ...`` line and exits 2, as talkdata's own errors are."""

    command_class = _Command

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except click.ClickException as err:
            hint = f" (see '{err.ctx.command_path} --help')" if getattr(err, "ctx", None) is not None else ""
            message = _one_line(err.format_message()) + hint
            if isinstance(err, click.NoSuchOption) and err.option_name in _MAIN_OPTIONS and err.ctx is not None:
                option = err.option_name
                message = f"{option} comes before the command name: talkdata {option} {err.ctx.info_name} ..."
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except UserError as err:  # raised while parsing (an option's callback)
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="talkdata")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors (no progress bars).")
@click.option("-v", "--verbose", is_flag=True, help="Print debug messages too.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Turn talking-face corpora into versioned, training-ready WebDataset shards."""
    if quiet and verbose:
        raise UserError("--quiet and --verbose cannot be used together")
    ctx.with_resource(terminal(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO))


def _no_progress(_ctx, _param, value):
    if value:
        hide_bars()


@main.command()
@click.argument("name", required=False)
def recipes(name: str | None) -> None:
    """List the bundled recipes, or show one recipe in full."""
    from .recipe import load_recipe, recipe_names
    from .acquire.describe import describe, download_summary

    if name is None:
        width = max(len(n) for n in recipe_names())
        for recipe_name in recipe_names():
            recipe = load_recipe(recipe_name)
            data = recipe.data
            click.echo(f"{recipe_name:{width}s} {data['title']}")
            click.echo(f"{'':{width}s} size: {data['size']}; license: {data['license']}")
            click.echo(f"{'':{width}s} access: {data['access']}")
            click.echo(f"{'':{width}s} {download_summary(recipe)}")
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
    for line in describe(recipe):
        click.echo(line)


@main.command()
@click.argument("recipe")
@click.option("--only", default=None, metavar="A,B",
              help="Download only these subsets, comma-separated (GRID: speakers s1,s2; VoxCeleb2: dev, test; "
                   "CREMA-D: actors 1001,1002; `talkdata recipes NAME` lists them).")
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch from this host instead of the official ones, same paths (https://mirror.example.org[/prefix]).")
@click.option("--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Parallel downloads.")
@click.option("--delete-archives", is_flag=True, help="Remove downloaded archives once they are extracted.")
@click.option("--dry-run", is_flag=True, help="Show what would be downloaded, and exit.")
@click.option("--no-progress", is_flag=True, expose_value=False, callback=_no_progress, help="Hide progress bars.")
def download(recipe, only, mirror, jobs, delete_archives, dry_run):
    """Download, verify and extract corpus RECIPE into $TALKDATA_HOME/RECIPE (default ~/.cache/talkdata/RECIPE).

    Interrupted downloads resume; finished ones are skipped. Credentials come from the environment
    variables the recipe names, or ~/.netrc (`talkdata recipes RECIPE` shows them).
    """
    from .recipe import load_recipe
    from .acquire.download import download as run_download
    from .acquire.plan import parse_only

    report = run_download(load_recipe(recipe), parse_only(only), mirror, jobs, keep_archives=not delete_archives,
                          dry_run=dry_run)
    click.echo(report.summary())


def _build_options(func):
    options = [
        click.option("--out", "out", type=click.Path(file_okay=False), required=True, callback=_check_out,
                     help="Output dataset folder (local; publish it with `talkdata push`)."),
        click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Local dask worker processes; 0 runs in this process."),
        click.option("--scheduler", default=None, callback=_check_scheduler,
                     help="Address of an existing dask scheduler (tcp://host:8786)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set crop.size=128 (repeatable; --list-keys shows all)."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Process only the first N clips."),
        click.option("--retry-failed", is_flag=True, help="Process again the clips that failed with an error."),
        click.option("--clip-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                     metavar="SECONDS", help="Reject a clip (decode_timeout) after this long without decoding progress."),
        click.option("--no-isolation", is_flag=True,
                     help="Process clips in this process instead of a supervised child (debugging; a decoder crash "
                          "then stops the build)."),
        click.option("--shape-model", type=click.Path(dir_okay=False), default=None,
                     help="Use this stats/shape_model.npz instead of fitting one."),
        click.option("--keep-cache", is_flag=True,
                     help="Keep a full copy of every sample in OUT/.work (by default the cache points into the "
                          "shards after a build: the dataset is stored once)."),
        click.option("--no-progress", is_flag=True, expose_value=False, callback=_no_progress,
                     help="Hide progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _check_out(ctx, _param, value):
    """Outputs are local folders; a URL given as --out would otherwise become a folder named "s3:"."""
    from .store import is_url

    if value and is_url(value) and ctx.command.name == "train":
        raise UserError(f"--out {value}: the run folder must be a local folder (checkpoints are written, then renamed)")
    if value and is_url(value):
        raise UserError(f"--out {value}: a build writes to a local folder (its resumable cache needs a filesystem); "
                        f"build into a folder, then publish it: talkdata push OUT {value}")
    return value


def _list_keys(ctx, _param, value):
    if value:
        for line in list_keys():
            click.echo(line)
        ctx.exit(0)


#: dask scheduler addresses: PROTOCOL://HOST[:PORT] or HOST:PORT
_SCHEDULER = re.compile(r"(?:(?P<scheme>tcp|tls|ws|wss|ucx)://)?(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?/?")


def _check_scheduler(_ctx, _param, value):
    """The address's form is checked here, so a malformed one never reaches dask (a traceback there)."""
    if value is None:
        return value
    match = _SCHEDULER.fullmatch(value)
    port = match and match["port"]
    if not match or not (match["scheme"] or port) or (port and not 1 <= int(port) <= 65535):
        raise click.BadParameter(f"{value!r} is not a dask scheduler address (tcp://HOST:PORT or HOST:PORT)")
    return value


@main.command()
@click.argument("recipe")
@click.option("--source", type=click.Path(), default=None,
              help="Folder holding the corpus in its official layout (default: $TALKDATA_HOME/RECIPE, downloading "
                   "what is missing first).")
@click.option("--only", default=None, metavar="A,B", help="Without --source: download only these subsets (see `talkdata download`).")
@click.option("--mirror", default=None, metavar="URL", help="Without --source: download from this host (same paths).")
@_build_options
@click.option("--list-keys", is_flag=True, expose_value=False, is_eager=True, callback=_list_keys,
              help="List every config key with its default, type, range or choices and help, and exit.")
def build(recipe, source, only, mirror, out, workers, scheduler, sets, limit, retry_failed, clip_timeout, no_isolation,
          shape_model, keep_cache):
    """Build WebDataset shards from the corpus RECIPE found in --source (or downloaded into the data root)."""
    from .config import resolve
    from .pipeline.build import build as run_build, read_given_model
    from .recipe import load_recipe
    from .acquire.plan import parse_only
    from .acquire.resolve import resolve_source

    loaded = load_recipe(recipe)
    overrides = parse_set_options(sets)
    config = resolve(loaded.defaults, loaded.name, overrides)  # every value checked before anything is downloaded
    if shape_model:
        read_given_model(shape_model, config.shape)  # and the given shape model (the build reads it again: small)
    source = resolve_source(loaded, source, parse_only(only), mirror)

    report = run_build(recipe, source, out, overrides, workers=workers, scheduler=scheduler,
                       limit=limit, retry_failed=retry_failed, shape_model=shape_model, isolate=not no_isolation,
                       clip_timeout=clip_timeout, keep_cache=keep_cache)
    click.echo(report.summary())


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="talkdata-demo", show_default=True,
              callback=_check_out, help="Folder for the demo datasets.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-progress", is_flag=True, expose_value=False, callback=_no_progress, help="Hide progress bars.")
def demo(out, workers):
    """Build the real sample clips bundled with talkdata (GRID, CREMA-D) into --out."""
    from .pipeline.build import build as run_build

    samples = resources.files("talkdata").joinpath("demo_data")
    for recipe, folder in (("grid", "grid"), ("crema-d", "crema_d")):
        target = Path(out) / recipe
        click.echo(f"== {recipe}: {samples / folder} -> {target}")
        report = run_build(recipe, str(samples / folder), target, workers=workers)
        click.echo(report.summary())


def _storage_option(func):
    return click.option(
        "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
        help="fsspec option for a dataset URL (s3://, gs://, https://...), e.g. endpoint_url=http://127.0.0.1:9000, "
             "anon=true, client_kwargs.region_name=eu-west-1 (repeatable; values are JSON or text). fsspec's config "
             "files and FSSPEC_<PROTOCOL>_<KEY> variables apply too.")(func)


def _store_options(items) -> dict:
    from .store import parse_storage_options

    return parse_storage_options(items)


@main.command()
@click.argument("dataset")
@_storage_option
def verify(dataset, storage_options):
    """Check DATASET (a folder or an fsspec URL) against its dataset.json: the version id against the
    manifest's content, counts against the shards and index.parquet, and every shard's and
    artifact's size and sha256 (exit 1 on any problem)."""
    from .manifest import load_manifest, verify as run_verify
    from .store import Store

    store = Store(dataset, _store_options(storage_options))
    manifest = load_manifest(store)
    problems = run_verify(store)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {dataset}", err=True)
        sys.exit(1)
    total = sum(s["samples"] for s in manifest["splits"].values())
    click.echo(f"ok: {len(manifest['shards'])} shards, {total} samples, version {manifest['version']}")


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("url")
@click.option("--replace", is_flag=True, help="Replace another version already at URL (its files that the new "
              "version does not have are removed).")
@_storage_option
def push(out, url, replace, storage_options):
    """Publish the build in folder OUT to URL (s3://bucket/prefix, gs://..., any fsspec URL or a folder):
    OUT is verified first, dataset.json is uploaded last, and a second run resumes an interrupted push."""
    from .publish import describe, push as run_push

    click.echo(describe(run_push(out, url, _store_options(storage_options), replace=replace)))


@main.command()
@click.argument("dataset_a")
@click.argument("dataset_b")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON (keys: see talkdata/diff.py).")
@_storage_option
def diff(dataset_a, dataset_b, as_json, storage_options):
    """Compare two built datasets (folders or fsspec URLs): config, recipe, versions, artifacts, samples
    added/removed/changed per split. --storage-option applies to each side that is a URL.

    Exit code 0 when both are the same version, 1 when they differ (like diff(1)), 2 on bad input.
    """
    from .diff import diff_datasets, render_text, to_json

    result = diff_datasets(dataset_a, dataset_b, storage_options=_store_options(storage_options))
    click.echo(to_json(result) if as_json else render_text(result), nl=False)
    sys.exit(0 if result.identical else 1)


@main.command()
@click.argument("dataset")
@click.option("--key", default=None, metavar="SPEAKER/CLIP", help="The sample to show; without it, a contact sheet.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: the sample's frames, landmarks, pose, blink, PCA, audio and MFCC on one time "
                   "axis, or without --key one frame of random samples per split.")
@click.option("--html", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML page of the sample (playable clip, frame slider); needs --key.")
@click.option("--frames", type=click.IntRange(min=1, max=32), default=8, show_default=True,
              help="Frames in the sample's strip.")
@click.option("--per-split", type=click.IntRange(min=1), default=6, show_default=True,
              help="Samples per split on the contact sheet.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the contact sheet's sample choice.")
@_storage_option
def inspect(dataset, key, png, html, frames, per_split, seed, storage_options):
    """Look at the samples of the built DATASET (folder or fsspec URL): one sample (--key) or a contact sheet."""
    from .qa import inspect_dataset

    for line in inspect_dataset(dataset, key=key, png=png, html=html, frames=frames, per_split=per_split, seed=seed,
                                storage_options=_store_options(storage_options)):
        click.echo(line)


def _list_training_keys(ctx, _param, value):
    if value:
        from .train import training_keys

        for line in training_keys():
            click.echo(line)
        ctx.exit(0)


@main.command()
@click.argument("name")
@click.option("--data", required=True, help="A dataset built by 'talkdata build' (folder or fsspec URL: s3://...).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (default: the loop's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, callback=_check_out,
              help="Run folder for config.json, metrics.csv, metrics.json, checkpoint.pt (and tensorboard/ when "
                   "TensorBoard is installed) [default: runs/NAME]. A folder with a checkpoint.pt is resumed.")
@click.option("--resume", is_flag=True,
              help="Insist on resuming: fail unless --out holds a checkpoint.pt (resuming happens anyway when it does).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a training setting, e.g. --set batch_size=8 (repeatable; --list-keys shows all).")
@click.option("--list-keys", is_flag=True, expose_value=False, is_eager=True, callback=_list_training_keys,
              help="List every training setting of each loop with its default, type, range and help, and exit.")
@click.option("--no-progress", is_flag=True, expose_value=False, callback=_no_progress,
              help="Hide the progress bar (print the loss about ten times instead).")
@_storage_option
def train(name, data, steps, device, out, resume, seed, sets, storage_options):
    """Run the reference training loop NAME (atnet, facial-pose) on a built dataset."""
    from .train import run_training

    result = run_training(name, data, steps=steps, device=device, out=out, seed=seed,
                          overrides=parse_set_options(sets), resume=True if resume else None,
                          storage_options=_store_options(storage_options))
    click.echo(result.summary())


_EXIT_STATUS = [1]  # what the command exits with; set by run() before the interpreter finalises


def _leave_without_native_teardown() -> None:
    """The last exit handler: flush the standard streams and end the process with the command's status.

    It runs after Python's own shutdown work (non-daemon threads joined, every other exit handler
    run: dask clusters, the isolated clip worker, logging) and skips what follows it, the C++ static
    destructors of native libraries. Arrow's thread pools can abort there ("terminate called without
    an active exception", apache/arrow#34314) after a command has finished its work, turning exit 0
    into 134."""
    logging.shutdown()  # its own exit handler was registered before this one, so it would not run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(_EXIT_STATUS[0])


def _status(code) -> int:
    """The process exit status Python gives ``sys.exit(code)``."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run() -> None:
    """The ``talkdata`` console command (``main`` with the process's exit handled as above)."""
    atexit.register(_leave_without_native_teardown)  # registered first, so it runs last
    try:
        main()
    except SystemExit as done:
        _EXIT_STATUS[0] = _status(done.code)
        raise
    _EXIT_STATUS[0] = 0


if __name__ == "__main__":  # pragma: no cover
    run()
