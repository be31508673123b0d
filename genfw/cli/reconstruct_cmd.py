"""`genfw reconstruct` and `genfw interpolate`: encode real images with a trained model.

Input images of any size and mode are centre-cropped to a square and resized to the model's
resolution (and converted to its channel count) before encoding.
"""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError


def _load(run: str, device: str, needs: tuple[str, ...]):
    from genfw.core.checkpoint import load_run  # engine helper; heavy imports only when used

    algo, cfg = load_run(run, device=device)
    missing = [c for c in needs if c not in algo.capabilities()]
    if missing:
        raise GenfwError(f"{type(algo).__name__} cannot {' / '.join(missing)} "
                         f"(it has: {', '.join(sorted(algo.capabilities())) or 'none'})")
    return algo


def _model_shape(algo) -> tuple[int, int]:
    ctx = algo.ctx
    return int(ctx.image_size), int(ctx.channels)


def _read(paths, size: int, channels: int):
    import torch

    from genfw.core.images import load_image

    return torch.cat([load_image(p, size, channels) for p in paths])


def add_commands(group: click.Group) -> None:
    @group.command("reconstruct")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
    @click.option("-o", "--out", default="reconstructions.png", show_default=True,
                  help="Output PNG: inputs in the first row, reconstructions in the second.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    def reconstruct(run, images, out, device):
        """Encode IMAGEs (posterior mean) and decode them again; any input size is resized."""
        import torch

        from genfw.core.images import save_grid

        algo = _load(run, device, ("reconstruct",))
        size, channels = _model_shape(algo)
        x = _read(images, size, channels)
        with torch.no_grad():
            rec = algo.reconstruct(x).float().cpu()
        path = save_grid(torch.cat([x, rec]), out, nrow=len(images))
        click.echo(f"wrote {len(images)} reconstructions ({size} px) to {path}")

    @group.command("interpolate")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.argument("image_a", metavar="IMAGE_A")
    @click.argument("image_b", metavar="IMAGE_B")
    @click.option("--steps", default=8, show_default=True, type=click.IntRange(2, 256),
                  help="Images in the strip, both ends included.")
    @click.option("-o", "--out", default="interpolation.png", show_default=True, help="Output PNG strip.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    def interpolate(run, image_a, image_b, steps, out, device):
        """Decode a straight line between the latent means of IMAGE_A and IMAGE_B."""
        import torch

        from genfw.core.images import save_grid

        algo = _load(run, device, ("encode", "decode"))
        size, channels = _model_shape(algo)
        x = _read([image_a, image_b], size, channels)
        with torch.no_grad():
            z = algo.encode(x).float()
            t = torch.linspace(0, 1, steps, device=z.device).view(-1, *([1] * (z.ndim - 1)))
            strip = algo.decode(z[:1] * (1 - t) + z[1:2] * t).float().cpu()
        path = save_grid(strip, out, nrow=steps)
        click.echo(f"wrote a {steps}-image interpolation ({size} px) to {path}")
