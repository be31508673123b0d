"""The paper-1024 generator and discriminator against Appendix A.3's tables 3-6, row by row.

The tables below are transcribed from the paper (type, kernel, output shape); the networks are built
on the meta device and run once with forward hooks recording every conv, pooling, up-sampling and
skip in execution order. Table 4 breaks off after the 1024 px skip; the two 3x3 convs that close
every other level are assumed there (marked below)."""
from __future__ import annotations

import pytest
import torch

from genfw.plugins.foam.networks import (ConcatSkip, DiscriminatorConfig, Down, FOAMDiscriminator, FOAMGenerator,
                                         GeneratorConfig, ResidualSkip, Up)

TABLE_3 = """
Conv 1 16x1024x1024
Conv 3 32x1024x1024
Conv 3 32x1024x1024
Downsample - 32x512x512
Conv 3 64x512x512
Conv 3 64x512x512
Downsample - 64x256x256
Conv 3 128x256x256
Conv 3 128x256x256
Downsample - 128x128x128
Conv 3 256x128x128
Conv 3 256x128x128
Downsample - 256x64x64
Conv 3 512x64x64
Conv 3 512x64x64
Downsample - 512x32x32
Conv 3 512x32x32
Conv 3 512x32x32
Downsample - 512x16x16
Conv 3 512x16x16
Conv 3 512x16x16
Downsample - 512x8x8
Conv 3 512x8x8
Conv 3 512x8x8
Downsample - 512x4x4
Conv 3 512x4x4
Conv 4 512x1x1
Conv 4 512x4x4
Conv 3 512x4x4
"""

TABLE_4 = """
Upsample - 512x8x8
Skip - 1024x8x8
Conv 3 512x8x8
Conv 3 512x8x8
Upsample - 512x16x16
Skip - 1024x16x16
Conv 3 512x16x16
Conv 3 512x16x16
Upsample - 512x32x32
Skip - 1024x32x32
Conv 3 512x32x32
Conv 3 512x32x32
Upsample - 512x64x64
Skip - 1024x64x64
Conv 3 512x64x64
Conv 3 512x64x64
Upsample - 512x128x128
Conv 3 256x128x128
Skip - 512x128x128
Conv 3 256x128x128
Conv 3 256x128x128
Upsample - 256x256x256
Conv 3 128x256x256
Skip - 256x256x256
Conv 3 128x256x256
Conv 3 128x256x256
Upsample - 128x512x512
Conv 3 64x512x512
Skip - 128x512x512
Conv 3 64x512x512
Conv 3 64x512x512
Upsample - 64x1024x1024
Conv 3 32x1024x1024
Skip - 64x1024x1024
Conv 3 32x1024x1024
Conv 3 32x1024x1024
"""  # the last two rows: assumed (the table breaks off after the 1024 px skip)

TABLE_5_TORGB = """
Conv 3 32x1024x1024
Conv 3 32x1024x1024
Conv 1 3x1024x1024
"""

TABLE_5_TOFILTER = """
Conv 3 64x1024x1024
Conv 3 64x1024x1024
Conv 1 1x1024x1024
"""

TABLE_6 = """
Conv 1 16x1024x1024
Conv 3 16x1024x1024
Conv 3 32x1024x1024
Downsample - 32x512x512
Conv 3 32x512x512
Conv 3 64x512x512
Downsample - 64x256x256
Conv 3 64x256x256
Conv 3 128x256x256
Downsample - 128x128x128
Conv 3 128x128x128
Conv 3 256x128x128
Downsample - 256x64x64
Conv 3 256x64x64
Conv 3 512x64x64
Downsample - 512x32x32
Conv 3 512x32x32
Conv 3 512x32x32
Downsample - 512x16x16
Conv 3 512x16x16
Conv 3 512x16x16
Downsample - 512x8x8
Conv 3 512x8x8
Conv 3 512x8x8
Downsample - 512x4x4
Conv 3 512x4x4
Conv 4 1x1x1
Conv 3 512x4x4
Conv 4 Nx1x1
"""


def rows(text: str, n_attr: int = 0) -> list[tuple]:
    out = []
    for line in text.strip().splitlines():
        kind, kernel, shape = line.split()
        out.append((kind, None if kernel == "-" else int(kernel),
                    tuple(n_attr if d == "N" else int(d) for d in shape.split("x"))))
    return out


def record(module: torch.nn.Module, run) -> list[tuple]:
    """(type, kernel, output C x H x W) of every conv / pool / up-sample / skip, in execution order;
    the convs inside a residual skip block count as part of the skip."""
    seen, handles = [], []
    inside_skip = {id(m) for s in module.modules() if isinstance(s, ResidualSkip) for m in s.modules()}

    def hook(kind):
        def fn(mod, args, out):
            k = mod.kernel_size[0] if kind == "Conv" else None
            seen.append((kind, k, tuple(out.shape[1:])))
        return fn

    for m in module.modules():
        if id(m) in inside_skip and not isinstance(m, ResidualSkip):
            continue
        kind = ("Conv" if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) else
                "Downsample" if isinstance(m, Down) else "Upsample" if isinstance(m, Up) else
                "Skip" if isinstance(m, (ConcatSkip, ResidualSkip)) else None)
        if kind:
            handles.append(m.register_forward_hook(hook(kind)))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def paper_g(**kw) -> FOAMGenerator:
    with torch.device("meta"):
        return FOAMGenerator(GeneratorConfig(image_size=1024, base_channels=32, max_channels=512,
                                             latent_channels=512, landmark_channels=0, **kw))


def _g_input():
    with torch.device("meta"):
        return torch.empty(1, 3, 1024, 1024), torch.empty(1, 1, 1024, 1024)


def test_paper_1024_generator_is_tables_3_4_5():
    g = paper_g()
    x, m = _g_input()
    seen = record(g, lambda: g(x, m, stage=9, alpha=1.0))
    expect = rows(TABLE_3) + rows(TABLE_4) + rows(TABLE_5_TORGB)
    assert len(seen) == len(expect)
    for i, (a, b) in enumerate(zip(seen, expect)):
        assert a == b, f"row {i}: network {a} vs table {b}"
    # the input is RGB + mask: table 3's 4 x 1024 x 1024
    assert g.from_input[-1].conv.in_channels == 4


def test_paper_1024_tofilter_is_table_5_right():
    g = paper_g()
    with torch.device("meta"):
        feat = torch.empty(1, 32, 1024, 1024)
    seen = record(g.to_filter_write[-1], lambda: g.to_filter_write[-1](feat))
    assert seen == rows(TABLE_5_TOFILTER)
    assert g.to_filter_read[-1][0].conv.out_channels == 2 * 64   # read filter from the 512 px branch


def test_conditional_generator_adds_skips_and_concatenates_attributes():
    g = paper_g(skip="residual", num_attributes=2)
    x, m = _g_input()
    with torch.device("meta"):
        a = torch.empty(1, 2)
    seen = record(g, lambda: g(x, m, attributes=a, stage=9, alpha=1.0))
    skips = [r for r in seen if r[0] == "Skip"]
    # table 4's widths in brackets: addition keeps the width
    assert [r[2] for r in skips] == [(512, 8, 8), (512, 16, 16), (512, 32, 32), (512, 64, 64), (256, 128, 128),
                                     (128, 256, 256), (64, 512, 512), (32, 1024, 1024)]
    # every other row as in the unconditional model, once the skip rows' widths are taken as added
    plain = [r for r in rows(TABLE_3) + rows(TABLE_4) + rows(TABLE_5_TORGB) if r[0] != "Skip"]
    assert [r for r in seen if r[0] != "Skip"] == plain
    assert g.latent.from_latent[0].in_channels == 512 + 2          # AttrConcat: 512 (+N)


@pytest.mark.parametrize("n_attr", [0, 3])
def test_paper_1024_discriminator_is_table_6(n_attr):
    with torch.device("meta"):
        d = FOAMDiscriminator(DiscriminatorConfig(image_size=1024, base_channels=32, max_channels=512,
                                                  landmark_channels=0, num_attributes=n_attr))
        x = torch.empty(1, 3, 1024, 1024)
    seen = record(d, lambda: d(x, stage=9, alpha=1.0))
    expect = rows(TABLE_6, n_attr)
    if not n_attr:
        expect = expect[:-2]   # D_attr only in the conditional model
    assert seen == expect


def test_presets_build_the_tables_widths(registry=None):
    from genfw.plugins.foam.presets import PRESETS

    for name, size, top in (("paper-1024", 1024, 32), ("paper-512-attributes", 512, 64), ("paper-256", 256, 128)):
        gen = PRESETS[name][0]["algorithm"]["generator"]
        with torch.device("meta"):
            g = FOAMGenerator(GeneratorConfig(image_size=size, base_channels=gen["base_channels"],
                                              max_channels=gen["max_channels"]))
        assert g.widths[-1] == top and g.widths[:5] == [512] * 5, name
