"""`genfw sample`: a grid of new images from a trained run or checkpoint."""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError
from genfw.core.precision import precision_option, prepare_inference


def _lis_steps(value: str | None):
    if value is None:
        return None
    if value == "all":
        return "all"
    try:
        k = int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'all' or a number of LIS modules, got {value!r}") from None
    if k < 0:
        raise click.BadParameter(f"must be >= 0, got {k}")
    return k


def add_commands(group: click.Group) -> None:
    @group.command("sample")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 4096), help="Images.")
    @click.option("-o", "--out", "out", default="samples.png", show_default=True, help="Output PNG grid.")
    @click.option("--seed", default=0, show_default=True, type=int, help="Seed of the latent noise.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--nrow", default=8, show_default=True, type=click.IntRange(1, 256), help="Images per row.")
    @precision_option
    @click.option("--lis-steps", default=None, metavar="all|K", help="LIS modules to apply (all, or the first K).")
    def sample(run, count, out, seed, device, precision, nrow, lis_steps):
        """Sample N images from a trained model into one grid."""
        import torch

        from genfw.core.checkpoint import load_run
        from genfw.core.images import save_grid

        algo, _ = load_run(run, device=device)
        prepare_inference(algo, precision)
        if "sample" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot sample (it has: "
                             f"{', '.join(sorted(algo.capabilities())) or 'no sampling capabilities'})")
        options = {}
        steps = _lis_steps(lis_steps)
        if steps is not None:
            options["lis_steps"] = steps
        generator = torch.Generator().manual_seed(seed)
        try:
            images = algo.sample(count, generator, **options)
        except TypeError as exc:
            if options:
                flags = ", ".join("--" + k.replace("_", "-") for k in options)
                raise GenfwError(f"this model does not take {flags}: {exc}") from None
            raise
        path = save_grid(images, out, nrow=nrow)
        click.echo(f"wrote {count} samples to {path}")
