"""Every (slot, fitting component) pair the registry offers, built tiny and run for one step.

`slot_pairs(registry)` enumerates the pairs from the slot declarations (genfw.core.roles); `run_pair`
puts the component's tiny spec into the owner's tiny config and runs it: an algorithm for one
training step on 16 px synthetic faces (with a centre mask, landmarks and attributes), a network for
one forward and backward on its example input. The only settings it changes are the mechanical ones
the mixing guide tells users to change (a loss that takes the discriminator's kind of score, the
image range of the generator, the encoder's z_dim equal to the decoder's latent size).
"""
from __future__ import annotations

import math
from typing import Any

import attrs
import torch

DATA_KEYS = ("image_size", "channels", "in_channels", "out_channels")
SIZE = 16  # the smallest size every tiny component runs at; larger where a component declares it


@attrs.frozen
class Pair:
    owner: str
    slot: str
    role: str
    component: str
    settings: tuple = ()  # (key, value) pairs of the owner the pair needs (a slot alternative)

    @property
    def id(self) -> str:
        extra = "".join(f",{k}={v}" for k, v in self.settings)
        return f"{self.owner}.{self.slot}={self.component}{extra}"


def slot_pairs(registry, owners: set[str] | None = None) -> list[Pair]:
    from genfw.core.roles import slot_table

    out = []
    for row in slot_table(registry):
        if owners is not None and row["owner"] not in owners:
            continue
        out.extend(Pair(row["owner"], row["slot"], row["role"], name) for name in row["fits"])
        for alt in row.get("fits_with", ()):
            settings = tuple(sorted(alt["set"].items()))
            out.extend(Pair(row["owner"], row["slot"], row["role"], name, settings) for name in alt["fits"])
    return out


def tiny_spec(registry, name: str, keep_shape: bool = False) -> dict:
    """{"type": name, **tiny}, without data-shape keys (the owner hands those down)."""
    entry = registry.get(name)
    spec = {"type": entry.name, **{k: v for k, v in entry.tiny.items()}}
    return spec if keep_shape else _strip_shape(spec)


def _strip_shape(spec: dict) -> dict:
    out = {k: (_strip_shape(v) if isinstance(v, dict) and "type" in v else v)
           for k, v in spec.items() if k not in DATA_KEYS}
    return out


def min_size(registry, spec: dict) -> int:
    """The smallest image size a spec's components declare (``min_image_size``), nested specs included."""
    entry = registry.get(str(spec["type"]))
    size = int(getattr(entry.factory, "min_image_size", 0) or 0)
    for v in spec.values():
        if isinstance(v, dict) and isinstance(v.get("type"), str):
            size = max(size, min_size(registry, v))
    return size


def _static(registry, spec: dict, key: str) -> Any:
    """A static trait of a spec, looking through the core adapters and wrappers."""
    entry = registry.get(str(spec["type"]))
    if entry.name == "core.range" and key == "output_range":
        return spec.get("to", "unit")
    if entry.name == "core.probabilities" and key == "output":
        return "probabilities"
    value = (entry.traits or {}).get(key)
    if value is None:
        for sub in ("generator", "discriminator"):
            if isinstance(spec.get(sub), dict):
                return _static(registry, spec[sub], key)
    return value


def _expects(registry, loss: dict) -> str:
    entry = registry.get(str(loss["type"]))
    return "probabilities" if entry.name == "core.bce" and loss.get("from_probabilities") else "logits"


def _latent(registry, spec: dict) -> int | None:
    for key in ("latent_dim", "z_dim"):
        if key in spec:
            return int(spec[key])
    entry = registry.get(str(spec["type"]))
    for sub in ("generator",):
        if isinstance(spec.get(sub), dict):
            return _latent(registry, spec[sub])
    if entry.config is not None:
        fields = attrs.fields_dict(entry.config)
        for key in ("latent_dim", "z_dim"):
            if key in fields and isinstance(fields[key].default, int):
                return fields[key].default
    return None


def pair_config(registry, pair: Pair) -> dict:
    """The owner's tiny config with the pair's component in the slot (plus mechanical settings)."""
    owner = registry.get(pair.owner)
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in owner.tiny.items()}
    if owner.kind == "algorithm":
        for k in DATA_KEYS:
            cfg.pop(k, None)
    comp = tiny_spec(registry, pair.component, keep_shape=owner.kind != "algorithm")
    if owner.kind != "algorithm" and owner.name == "csa.refine":
        comp = tiny_spec(registry, pair.component)  # the refine net hands the feature width down
    cfg[pair.slot] = comp
    cfg.update(dict(pair.settings))
    if owner.kind != "algorithm":
        return cfg
    defaults = registry.resolve({"type": owner.name})[1]
    from genfw.core.roles import slots_of

    slots = {s.key: s for s in slots_of(owner)}
    if slots[pair.slot].enabled_by:
        cfg[slots[pair.slot].enabled_by] = True
    d_keys = [k for k, s in slots.items() if s.role == "image-discriminator"
              and (not s.enabled_by or cfg.get(s.enabled_by, getattr(defaults, s.enabled_by)))]
    loss_key = next((k for k, s in slots.items() if s.role == "gan-loss"), None)
    if loss_key and d_keys:
        loss = dict(cfg.get(loss_key) or getattr(defaults, loss_key))
        if pair.role == "image-discriminator":
            out = _static(registry, comp, "output") or "logits"
            if registry.get(str(loss["type"])).name == "core.bce":
                # BCE is the loss with two forms: match it to the discriminator's kind of score
                loss["from_probabilities"] = out == "probabilities"
            elif out == "probabilities":
                loss = {"type": "core.bce", "from_probabilities": True}
            cfg[loss_key] = loss
        for k in d_keys:  # the other discriminators follow the loss
            if k == pair.slot:
                continue
            d = dict(cfg.get(k) or getattr(defaults, k))
            if (_static(registry, d, "output") or "logits") != _expects(registry, loss):
                logit_d = tiny_spec(registry, "core.dcgan-discriminator")
                cfg[k] = (logit_d if _expects(registry, loss) == "logits"
                          else {"type": "core.probabilities", "discriminator": logit_d})
    if hasattr(defaults, "image_range") and ("generator" in cfg or hasattr(defaults, "generator")):
        g = dict(cfg.get("generator") or getattr(defaults, "generator"))
        rng = _static(registry, g, "output_range")
        if rng in ("signed", "unit"):
            cfg["image_range"] = rng
    if owner.name == "introvae.algorithm":
        dec = dict(cfg.get("decoder") or {"type": "introvae.decoder"})
        if _static(registry, dec, "output_range") == "signed":
            dec = {"type": "core.range", "to": "unit", "generator": dec}
            cfg["decoder"] = dec
        latent = _latent(registry, dec)
        enc = dict(cfg.get("encoder") or {"type": "introvae.encoder"})
        enc["z_dim"] = latent
        cfg["encoder"] = enc
    return cfg


def _batch(size: int, n: int = 2) -> dict:
    from genfw.core.data.embedded import SyntheticFaces, SyntheticFacesConfig

    ds = SyntheticFaces(SyntheticFacesConfig(image_size=size, length=n, attributes=["Smiling", "Male"]))
    items = [ds[i] for i in range(n)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    batch["mask"] = mask
    return batch


def _defaults(registry, spec: dict) -> list[str]:
    """Component types in the owner's defaults that the spec does not override (they run too)."""
    _, cfg = registry.resolve(spec)
    out = []
    for f in attrs.fields(type(cfg)):
        value = getattr(cfg, f.name)
        if f.name not in spec and isinstance(value, dict) and isinstance(value.get("type"), str):
            out.append(value["type"])
    return out


def run_pair(registry, pair: Pair) -> dict[str, float]:
    """Build the pair tiny and run it once; returns the step's logs (networks: the output mean)."""
    from genfw.core.algorithm import Context
    from genfw.core.step import run_step

    owner = registry.get(pair.owner)
    cfg = pair_config(registry, pair)
    torch.manual_seed(0)
    if owner.kind != "algorithm":
        from genfw.testing.checks import _call, _tensors

        module = registry.build({"type": owner.name, **cfg})
        outs = _tensors(_call(module, owner.example(module)))
        total = sum(t.float().mean() for t in outs if t.is_floating_point())
        if isinstance(total, torch.Tensor) and total.requires_grad:
            total.backward()
        return {"output": float(total.detach()) if isinstance(total, torch.Tensor) else float(total)}
    spec = {"type": owner.name, **cfg}
    size = max(SIZE, min_size(registry, spec), *(min_size(registry, {"type": v}) for v in _defaults(registry, spec)))
    algo = registry.build(spec, kind="algorithm", path="algorithm")
    ctx = Context(registry=registry, image_size=size, channels=3, num_attributes=2,
                  attribute_names=["Smiling", "Male"], has_landmarks=True, has_mask=True, total_steps=2,
                  batch_size=2, allow_random_weights=True)
    algo.setup(ctx)
    logs = run_step(algo, _batch(size), 0)
    bad = [k for k, v in logs.items() if isinstance(v, float) and not math.isfinite(v)]
    assert not bad, f"{pair.id}: non-finite logs {bad}"
    return logs
