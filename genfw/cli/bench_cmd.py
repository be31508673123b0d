"""`genfw bench`: machine throughput, then registered benchmarks, one JSON line each."""
from __future__ import annotations

import json

import click


def add_commands(group: click.Group) -> None:
    @group.command("bench")
    @click.argument("names", nargs=-1)
    @click.option("--quick", is_flag=True, help="Small sizes and few repeats (checks, not numbers).")
    @click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
    @click.option("--list", "list_only", is_flag=True, help="List registered benchmarks and exit.")
    def bench(names, quick, device, list_only):
        """Measure this machine's conv/matmul GFLOP/s, then run benchmarks (all, or NAMES)."""
        from genfw.core.bench import run_benchmarks
        from genfw.core.trainer import resolve_device
        from genfw.registry import get_registry

        registry = get_registry()
        if list_only:
            for e in registry.entries("benchmark"):
                click.echo(f"{e.name}\t{e.help}")
            return
        failed = 0
        for rec in run_benchmarks(registry, names, quick=quick, device=resolve_device(device)):
            click.echo(json.dumps(rec))
            failed += "error" in rec
        if failed:
            raise SystemExit(1)  # the JSON lines above say which benchmark failed and why
