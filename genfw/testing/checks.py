"""The checks behind the contract tests (plain functions raising AssertionError)."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file

from genfw.registry import NETWORK_KINDS, Entry, Registry


def contract_entries(registry: Registry, kinds: Iterable[str], plugins: Iterable[str] | None = None) -> list[Entry]:
    """Entries of the given kinds, optionally only from some plugins (env GENFW_CONTRACT_PLUGINS)."""
    if plugins is None:
        env = os.environ.get("GENFW_CONTRACT_PLUGINS", "")
        plugins = [p.strip() for p in env.split(",") if p.strip()] or None
    wanted = set(plugins) if plugins else None
    return [e for k in kinds for e in registry.entries(k) if wanted is None or e.plugin in wanted]


def tiny_build(registry: Registry, entry: Entry) -> Any:
    """Build from defaults plus the entry's `tiny` overrides (small enough for CPU tests)."""
    return registry.build({"type": entry.name, **entry.tiny})


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def _call(module: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return module(**inputs)
    if isinstance(inputs, (list, tuple)):
        return module(*inputs)
    return module(inputs)


def check_network(registry: Registry, entry: Entry) -> None:
    """Builds tiny, runs forward+backward, gradients reach parameters, safetensors round-trip."""
    assert entry.kind in NETWORK_KINDS
    assert entry.example is not None, (
        f"{entry.name}: register it with example=fn(module) -> inputs so contract tests can run it")
    torch.manual_seed(0)
    module = tiny_build(registry, entry)
    assert isinstance(module, torch.nn.Module), f"{entry.name}: factory must return an nn.Module"
    module.train()
    inputs = entry.example(module)
    outs = _tensors(_call(module, inputs))
    assert outs, f"{entry.name}: forward returned no tensors"
    for t in outs:
        assert torch.isfinite(t).all(), f"{entry.name}: forward produced non-finite values"
    total = sum(t.float().mean() for t in outs if t.is_floating_point() and t.requires_grad)
    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        assert isinstance(total, torch.Tensor), f"{entry.name}: no output depends on the parameters"
        total.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"{entry.name}: backward reached no parameter"
        assert any(g.abs().sum() > 0 for g in grads), f"{entry.name}: all gradients are zero"
        assert all(torch.isfinite(g).all() for g in grads), f"{entry.name}: non-finite gradient"

    # state round-trip through safetensors into a freshly built module: same eval outputs
    module.eval()
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state.safetensors")
        save_file(state, path)
        torch.manual_seed(1)
        fresh = tiny_build(registry, entry)
        fresh.load_state_dict(load_file(path))
    fresh.eval()
    with torch.no_grad():
        torch.manual_seed(2)
        a = _tensors(_call(module, inputs))
        torch.manual_seed(2)
        b = _tensors(_call(fresh, inputs))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y), f"{entry.name}: outputs differ after a safetensors round-trip"


def _scalar_loss(out: Any, name: str) -> torch.Tensor:
    if isinstance(out, dict):
        out = out.get("loss")
    assert isinstance(out, torch.Tensor) and out.numel() == 1, (
        f"{name}: a loss must return a scalar tensor (or a mapping with 'loss'), got {type(out).__name__}")
    assert torch.isfinite(out).all(), f"{name}: the loss is not finite ({float(out.detach())})"
    return out.reshape(())


def _grad_reaches(loss: torch.Tensor, inputs: list[torch.Tensor], name: str) -> None:
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    assert leaves, f"{name}: the contract inputs have no tensor that requires grad"
    assert loss.requires_grad, f"{name}: the loss is not differentiable (no grad_fn)"
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    got = [g for g in grads if g is not None]
    assert got and any(g.abs().sum() > 0 for g in got), f"{name}: no gradient reaches the inputs"
    assert all(torch.isfinite(g).all() for g in got), f"{name}: non-finite gradient"


def check_loss(registry: Registry, entry: Entry) -> None:
    """Finite scalar, differentiable, and lower on a trivially good case than on a bad one.

    GAN losses (modules with `d(real, fake)` and `g(fake, real)`) are checked on scores: a D that
    is right (real +1, fake -1) must score lower than one that is wrong, a fooling G lower than a
    caught one. Other losses register `cases=fn(module) -> (good inputs, bad inputs)`.
    """
    torch.manual_seed(0)
    module = tiny_build(registry, entry)
    name = entry.name
    if callable(getattr(module, "d", None)) and callable(getattr(module, "g", None)):
        def scores(v):
            return (v + 0.1 * torch.linspace(-1, 1, 8)).reshape(8, 1).requires_grad_(True)

        pos_r, neg_f = scores(1.0), scores(-1.0)
        right = _scalar_loss(module.d(pos_r, neg_f), f"{name}.d")
        neg_r, pos_f = scores(-1.0), scores(1.0)
        wrong = _scalar_loss(module.d(neg_r, pos_f), f"{name}.d")
        assert float(right.detach()) < float(wrong.detach()), (
            f"{name}: D loss {float(right.detach()):.4g} for a correct D (real +1, fake -1) is not below "
            f"{float(wrong.detach()):.4g} for a wrong one: the sign is flipped")
        _grad_reaches(wrong, [neg_r, pos_f], f"{name}.d")
        fool_f, fool_r = scores(1.0), scores(-1.0)
        fooled = _scalar_loss(module.g(fool_f, fool_r), f"{name}.g")
        caught_f, caught_r = scores(-1.0), scores(1.0)
        caught = _scalar_loss(module.g(caught_f, caught_r), f"{name}.g")
        assert float(fooled.detach()) < float(caught.detach()), (
            f"{name}: G loss {float(fooled.detach()):.4g} when D is fooled is not below {float(caught.detach()):.4g} when "
            "it is not: the sign is flipped")
        _grad_reaches(caught, [caught_f], f"{name}.g")
        return
    assert entry.cases is not None, (
        f"{name}: register it with cases=fn(module) -> (good inputs, bad inputs) so the contract can "
        "check the loss's sign (or give it d(real, fake) / g(fake, real) methods)")
    good_in, bad_in = entry.cases(module)
    good = _scalar_loss(_call(module, good_in), name)
    bad = _scalar_loss(_call(module, bad_in), name)
    assert float(good.detach()) < float(bad.detach()), (
        f"{name}: loss {float(good.detach()):.4g} on the good case is not below {float(bad.detach()):.4g} on the bad case")
    flat = list(bad_in.values()) if isinstance(bad_in, dict) else list(bad_in) if isinstance(bad_in, (list, tuple)) else [bad_in]
    _grad_reaches(bad, flat, name)


def check_dataset(registry: Registry, entry: Entry) -> None:
    """Datasets that need no files: items follow the batch contract."""
    from genfw.core.errors import GenfwError

    try:
        ds = tiny_build(registry, entry)
    except GenfwError:
        return  # needs user files (root); its own tests cover it
    assert len(ds) > 0
    item = ds[0]
    img = item["image"]
    assert img.dtype == torch.float32 and img.ndim == 3
    assert img.shape[0] == ds.channels and tuple(img.shape[1:]) == (ds.image_size, ds.image_size)
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    if ds.has_landmarks:
        lm = item["landmarks"]
        assert lm.shape == (68, 2) and float(lm.min()) >= 0 and float(lm.max()) <= 1
    if ds.num_attributes:
        a = item["attributes"]
        assert a.shape == (ds.num_attributes,) and set(a.unique().tolist()) <= {0.0, 1.0}


def check_mask(registry: Registry, entry: Entry) -> None:
    """Masks: N x 1 x H x W, values in {0, 1}, deterministic for a seeded generator."""
    from genfw.core.errors import GenfwError

    try:
        gen = tiny_build(registry, entry)
    except GenfwError:
        return  # needs user files
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    m1, m2 = gen(3, 32, 48, generator=g1), gen(3, 32, 48, generator=g2)
    assert m1.shape == (3, 1, 32, 48)
    assert set(m1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m1, m2), f"{entry.name}: not deterministic for a seeded generator"


def check_preset(registry: Registry, entry: Entry) -> None:
    """Every key of the preset is known and every value validates."""
    from genfw.core.config import deep_merge, resolve_run

    raw = deep_merge({"plugin": entry.plugin, "preset": entry.short}, entry.value)
    resolve_run(raw, registry)


# --- algorithms: one step, save, resume -----------------------------------------------------------
CONTRACT_DATA = {"type": "core.synthetic-faces", "image_size": 16, "length": 8}


def contract_run_config(registry: Registry, entry: Entry, out: str, steps: int) -> dict:
    """A tiny run of `entry`: its `tiny` options, small synthetic data (plus its `tiny_data`
    overrides), and the mask of its plugin's preset for the algorithm when that has one."""
    mask = {}
    for p in registry.entries("preset"):
        spec = (p.value or {}).get("algorithm", {})
        try:
            same = registry.get(str(spec.get("type", "")), kind="algorithm").name == entry.name
        except Exception:  # noqa: BLE001 - a preset of another algorithm or a broken one
            same = False
        if same and p.value.get("mask"):
            mask = dict(p.value["mask"])
            break
    data = dict(entry.tiny_data) if "type" in entry.tiny_data else {**CONTRACT_DATA, **entry.tiny_data}
    raw = {"algorithm": {"type": entry.name, **entry.tiny}, "data": data, "device": "cpu", "seed": 0,
           "out": out, "train": {"steps": steps, "batch_size": 2, "log_every": 1, "sample_every": 0,
                                 "checkpoint_every": 1, "sample_count": 2}}
    if mask:
        raw["mask"] = mask
    return raw


def check_algorithm(registry: Registry, entry: Entry) -> None:
    """Builds with its tiny config, runs a step and checkpoints it; a run resumed from that
    checkpoint ends bit-identical to one that ran both steps without stopping."""
    import json
    import math

    from genfw.core.config import resolve_run
    from genfw.core.trainer import Trainer

    def run(out: str, steps: int, resume: bool = False):
        cfg, resolved = resolve_run(contract_run_config(registry, entry, out, steps), registry)
        trainer = Trainer(cfg, resolved, registry, resume=resume, progress=False)
        trainer.run()
        return trainer

    with tempfile.TemporaryDirectory() as tmp:
        straight = run(os.path.join(tmp, "straight"), 2)
        first = run(os.path.join(tmp, "resumed"), 1)
        assert first.step == 1 and first.last_checkpoint, f"{entry.name}: no checkpoint after one step"
        lines = [json.loads(x) for x in open(os.path.join(tmp, "resumed", "log.jsonl")).read().splitlines()]
        losses = {k: v for k, v in lines[-1].items() if "loss" in k.lower() and isinstance(v, (int, float))}
        assert losses, f"{entry.name}: the step logged no loss"
        assert all(math.isfinite(v) for v in losses.values()), f"{entry.name}: non-finite loss {losses}"
        resumed = run(os.path.join(tmp, "resumed"), 2, resume=True)
        assert resumed.step == 2, f"{entry.name}: resume did not continue to step 2"
        for net, module in straight.algo.nets.items():
            a, b = module.state_dict(), resumed.algo.nets[net].state_dict()
            for key in a:
                assert torch.equal(a[key], b[key]), (
                    f"{entry.name}: after save + resume, {net}.{key} differs from an uninterrupted run")


def train_preset(registry: Registry, plugin: str, preset: str = "default", overrides=()) -> Any:
    """Train `plugin`'s preset in this process with `--set`-style overrides; returns the trainer
    (`trainer.algo` is the trained algorithm, `trainer.cfg` the run config) for behaviour tests."""
    from genfw.core.config import build_run_config
    from genfw.core.trainer import Trainer

    cfg, resolved = build_run_config(registry, plugin, preset, None, list(overrides))
    trainer = Trainer(cfg, resolved, registry, progress=False)
    trainer.run()
    return trainer
