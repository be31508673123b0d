"""The `genfw` command line. Each command group lives in its own module of this package."""
from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from genfw import __version__
from genfw.core.errors import GenfwError

# Modules that contribute commands; each defines add_commands(group). Missing ones are skipped.
COMMAND_MODULES = (
    "plugins_cmd",    # plugins, components, config show
    "run_cmd",        # run
    "sample_cmd",     # sample
    "reconstruct_cmd",  # reconstruct, interpolate
    "inpaint_cmd",    # inpaint
    "landmarks_cmd",  # landmarks
    "complete_cmd",   # complete
    "eval_cmd",       # eval
    "data_cmd",       # masks, weights, landmarks
    "bench_cmd",      # bench
)


# What to do about the filesystem errors a user can hit anywhere (last resort: the commands turn
# the ones they expect into their own messages).
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else",
    errno.EROFS: "that filesystem is read-only: choose a writable location",
    errno.EFBIG: "the file exceeds the size limit of the filesystem or of this process (ulimit -f): "
                 "raise the limit or write somewhere else",
    errno.ENOTDIR: "a component of the path is a file, not a directory: fix the path",
    errno.EISDIR: "that is a directory: give a file path",
    errno.ENOENT: "check the path",
    errno.EACCES: "check the permissions or choose another location",
    errno.EPERM: "check the permissions or choose another location",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EIO: "the device reported an I/O error: check the disk",
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    advice = _OS_ADVICE.get(exc.errno, "")
    return "; ".join(x for x in (f"{what}: {path}" if path else what, advice) if x)


class GenfwGroup(click.Group):
    """Turns user mistakes (GenfwError, bad files) into one line on stderr and exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            _click_error(exc)
            raise click.exceptions.Exit(exc.exit_code) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _click_error(exc)
            ctx.exit(exc.exit_code)
        except GenfwError as exc:
            if os.environ.get("GENFW_DEBUG"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:
            if os.environ.get("GENFW_DEBUG"):
                raise
            click.echo(f"error: {os_error_line(exc)}", err=True)
            ctx.exit(2)

    def get_command(self, ctx, name):
        _add_plugin_commands(self)
        if name != "plugins":  # `genfw plugins` must work in strict mode to show what failed
            from genfw.registry import loaded

            loaded()  # strict mode: one error listing every failed plugin
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        _add_plugin_commands(self)
        return super().list_commands(ctx)


def _click_error(exc: click.ClickException) -> None:
    """click's own errors (bad option, missing argument) spelled like ours: `error: ...`."""
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        click.echo(exc.ctx.get_usage(), err=True)
        click.echo(f"Try '{exc.ctx.command_path} {exc.ctx.help_option_names[0]}' for help.", err=True)
    click.echo(f"error: {exc.format_message()}", err=True)


_plugin_commands_added = False


def _add_plugin_commands(group: click.Group) -> None:
    """Plugins' register_commands hooks, called once, after -p flags were seen."""
    global _plugin_commands_added
    if _plugin_commands_added:
        return
    _plugin_commands_added = True
    from genfw.registry import loaded
    from genfw.registry.manager import add_plugin_commands

    add_plugin_commands(group, loaded(allow_failures=True))


def _disable(ctx, param, values):
    from genfw.registry import manager

    for v in values:
        if not v.startswith("no:"):
            raise click.BadParameter(f"expected no:NAME (like pytest), got {v!r}")
        manager.cli_disabled.add(v[3:])
    return values


def _debug(ctx, param, value):
    if value:
        os.environ["GENFW_DEBUG"] = "1"
    return value


@click.group(cls=GenfwGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genfw")
@click.option("-p", "plugin_flags", multiple=True, metavar="no:NAME", expose_value=False,
              callback=_disable, is_eager=True, help="Disable a plugin (repeatable), e.g. -p no:lis.")
@click.option("--debug", is_flag=True, expose_value=False, callback=_debug, is_eager=True,
              help="Show full tracebacks.")
def cli() -> None:
    """genfw: generative image models as plugins."""


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"genfw.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"genfw.cli.{_name}":
            raise
        continue
    _mod.add_commands(cli)


def main() -> None:
    try:
        cli.main(prog_name="genfw", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
