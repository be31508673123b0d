"""What `genfw masks --set NAME` and `genfw eval --report DIR` run (kept apart from the commands'
own modules so those stay small): mask-set writing and the results-folder evaluation."""
from __future__ import annotations

import click

from genfw.core.errors import GenfwError


def is_mask_set_request(options: tuple[str, ...]) -> bool:
    """`--set NAME` (no '=') names an evaluation mask set; `--set KEY=VALUE` is a generator option."""
    names = [o for o in options if "=" not in o]
    if names and len(options) > 1:
        raise GenfwError(f"--set {names[0]} names a mask set and takes no other --set options "
                         f"(got {', '.join(options)}); drop the KEY=VALUE options")
    return bool(names)


def write_mask_set(options: tuple[str, ...], size: int, count: int, out: str) -> None:
    from genfw.core.eval.mask_sets import get_spec, GeneratedMaskSet, write_set

    name = options[0]
    get_spec(name)
    if out.lower().endswith(".png"):
        raise GenfwError(f"--set {name} writes a folder of masks; give -o a folder, not {out}")
    meta = write_set(GeneratedMaskSet(name, size, count), out)
    r = meta["hole_ratio"]
    click.echo(f"wrote mask set {name} ({size} px, {count} masks) to {out}: sha256 {meta['sha256']} "
               f"(hole ratio min {min(r):.3f}, mean {sum(r) / len(r):.3f}, max {max(r):.3f})")
