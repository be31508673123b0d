"""The hook implementations genfw calls; only genfw's public API is imported."""
import torch

from genfw import hookimpl
from genfw_example.networks import MLPGenerator, MLPGeneratorConfig, PixelNorm, PixelNormConfig

GENFW_API = ">=1.0,<2"  # the genfw plugin API this plugin was written against (genfw.api.API_VERSION)


@hookimpl
def register_components(registry):
    registry.register("generator", "mlp-generator", MLPGenerator, config=MLPGeneratorConfig,
                      example=lambda m: (torch.randn(2, m.latent_dim),),
                      tiny={"hidden": 16, "image_size": 8, "latent_dim": 8})
    registry.register("layer", "pixel-norm", PixelNorm, config=PixelNormConfig,
                      example=lambda m: (torch.randn(2, 4, 3, 3, requires_grad=True),))
    registry.preset("default", {
        "algorithm": {
            "type": "core.gan",
            "generator": {"type": "example.mlp-generator", "latent_dim": 32, "hidden": 128},
            "discriminator": {"type": "core.dcgan-discriminator"},
            "image_range": "unit",  # the generator's sigmoid range: real images are fed as [0, 1] too
        },
        "data": {"type": "core.lfw-subset", "image_size": 32, "channels": 1},
        "train": {"steps": 200, "batch_size": 16, "sample_every": 100, "checkpoint_every": 100},
    }, help="MLP generator vs the core DCGAN discriminator on real faces")


@hookimpl
def register_commands(cli):
    import click

    @cli.command("example-hello")
    def hello():
        """Show that plugins can add CLI commands."""
        click.echo("hello from genfw-example-plugin")
