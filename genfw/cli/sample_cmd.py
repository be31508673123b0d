"""`genfw sample`: a grid of new images from a trained run or checkpoint."""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError


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


def _sample_with_steps(algo, count: int, seed: int, steps):
    """Samples with every LIS module (any iterative latent transform) of the model run for exactly
    `steps` steps; "all": one strip per sample, the images after 0, 1, ..., K steps side by side."""
    import torch

    from genfw.core.adapters import latent_transforms, transform_steps

    found = latent_transforms(*algo.nets.values())
    if not found:
        raise GenfwError("--lis-steps: this model's generator has no LIS modules (no iterative latent transform); "
                         "leave --lis-steps out")
    k_max = min(m.num_steps for m in found)
    if steps != "all" and steps > k_max:
        raise GenfwError(f"--lis-steps {steps} is out of range: this model's LIS stack has {k_max} modules "
                         f"(use 0..{k_max} or all)")
    ks = range(k_max + 1) if steps == "all" else [steps]
    shots = []
    for k in ks:  # the same noise for every k: the strip shows what each module does to one z
        with transform_steps(algo.nets.values(), k):
            shots.append(algo.sample(count, torch.Generator().manual_seed(seed)))
    return torch.cat(shots, dim=-1)


def add_commands(group: click.Group) -> None:
    @group.command("sample")
    @click.argument("run", metavar="RUN_OR_CHECKPOINT")
    @click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 4096), help="Images.")
    @click.option("-o", "--out", "out", default="samples.png", show_default=True, help="Output PNG grid.")
    @click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**62 - 1),
                  help="Seed of the latent noise.")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--nrow", default=8, show_default=True, type=click.IntRange(1, 256), help="Images per row.")
    @click.option("--lis-steps", default=None, metavar="all|K", help="LIS modules to apply (all, or the first K).")
    def sample(run, count, out, seed, device, nrow, lis_steps):
        """Sample N images from a trained model into one grid."""
        import torch

        from genfw.core.checkpoint import load_run
        from genfw.core.images import save_grid

        algo, _ = load_run(run, device=device)
        if "sample" not in algo.capabilities():
            raise GenfwError(f"{type(algo).__name__} cannot sample (it has: "
                             f"{', '.join(sorted(algo.capabilities())) or 'no sampling capabilities'})")
        generator = torch.Generator().manual_seed(seed)
        steps = _lis_steps(lis_steps)
        if steps is None:
            images = algo.sample(count, generator)
        else:
            images = _sample_with_steps(algo, count, seed, steps)
        path = save_grid(images, out, nrow=nrow)
        click.echo(f"wrote {count} samples to {path}")
