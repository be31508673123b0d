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


def check_loss(registry: Registry, entry: Entry) -> None:
    """Builds from its defaults."""
    obj = registry.build(entry.name)
    assert obj is not None


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
