"""Roles: the calling conventions components play, and the slot check that enforces them at build.

Read this file first if you mix components. A *role* is a small typed protocol: how a component is
called, the value ranges it produces or expects, which conditioning it takes. A registry entry
declares the roles it provides (``Entry.roles``; derived from the kind and the class's ``roles``
attribute where it does not say). A *slot* is a nested config table of an algorithm or network
(``algorithm.discriminator``, ``algorithm.refine.attention``, ...); it names the role it accepts.
``build_slot`` resolves the table, refuses a component of the wrong role, builds it, then checks the
built module's declared traits (attributes named below) against what the slot needs. Every failure is
one ``ConfigError`` line: the slot path, the component, what is missing, and the registered
components that would fit.

Traits a built module declares as plain attributes (absent means "not declared", not checked):

=================  ==========================================================================
``output_range``   generators: ``"signed"`` ([-1, 1], e.g. tanh), ``"unit"`` ([0, 1], e.g. sigmoid)
                   or ``"unbounded"`` (no output activation: fits a slot of either range)
``output``         discriminators: ``"logits"`` (raw scores) or ``"probabilities"`` (sigmoid)
``conditioning``   discriminators: the keyword inputs it accepts beyond the image, a subset of
                   ``stage``, ``alpha``, ``landmarks``, ``attributes``
``latent_dim``     latent generators and latent transforms: the size of z
``z_dim``          image encoders: the size of mu / logvar
``expects``        GAN losses: ``"logits"`` or ``"probabilities"`` (what D must output)
=================  ==========================================================================
"""
from __future__ import annotations

import contextvars
import inspect
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import attrs
import torch

from genfw.core.errors import ConfigError, GenfwError, UnknownComponentError

Tensor = torch.Tensor
CONDITIONING = ("stage", "alpha", "landmarks", "attributes")


# --- the protocols (documentation that type-checks) ---------------------------------------------
@runtime_checkable
class LatentGenerator(Protocol):
    """``G(z, from_prior=True, **kw) -> image``: z is N x latent_dim; image N x C x H x W in
    ``output_range``. ``from_prior=False`` marks encoder latents (latent transforms skip them)."""

    latent_dim: int
    output_range: str

    def __call__(self, z: Tensor, from_prior: bool = True, **kw: Any) -> Tensor: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """``E(image) -> (mu, logvar)``, each N x z_dim; image in [0, 1] unless ``input_range`` says."""

    z_dim: int

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class ImageDiscriminator(Protocol):
    """``D(image, **conditioning) -> scores`` (N or N x ...); ``output`` says logits or
    probabilities; ``conditioning`` lists the keyword inputs it accepts (empty: none)."""

    output: str
    conditioning: frozenset

    def __call__(self, image: Tensor, **conditioning: Any) -> Tensor: ...


@runtime_checkable
class MaskedGenerator(Protocol):
    """``G(image, mask, **context) -> image``: mask N x 1 x H x W with 1 = hole; context may carry
    landmarks, attributes, stage, alpha (a generator ignores what it does not use)."""

    def __call__(self, image: Tensor, mask: Tensor, **context: Any) -> Any: ...


@runtime_checkable
class FeatureAttention(Protocol):
    """``layer(features, mask, **context) -> features`` of the same shape; mask N x 1 x h x w at the
    features' resolution (1 = hole). ``return_attention=True`` may also return an attention map.
    Its config may take a ``channels`` hint: the parent passes the feature width."""

    def __call__(self, features: Tensor, mask: Tensor, **context: Any) -> Any: ...


@runtime_checkable
class LatentTransform(Protocol):
    """``T(z) -> z`` of the same shape (N x latent_dim); may add an auxiliary loss (AuxLoss). An
    iterative one exposes ``num_steps`` and takes ``steps=k`` to run only its first k steps."""

    latent_dim: int

    def __call__(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class GANLossRole(Protocol):
    """``loss.d(real_scores, fake_scores)`` and ``loss.g(fake_scores, real_scores=None)``; ``expects``
    says whether scores must be logits or probabilities."""

    expects: str

    def d(self, real: Tensor, fake: Tensor) -> Tensor: ...

    def g(self, fake: Tensor, real: Tensor | None = None) -> Tensor: ...


@attrs.frozen
class Role:
    name: str
    kind: str              # the registry kind whose entries may play it
    protocol: type | None
    help: str


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("latent-generator", "generator", LatentGenerator, "G(z, from_prior) -> image; latent_dim, output_range"),
    Role("masked-generator", "generator", MaskedGenerator, "G(image, mask, **context) -> image (inpainting)"),
    Role("refinement-generator", "generator", MaskedGenerator,
         "G(cat[coarse completion, masked input], mask, return_features=...) -> image (CSA's second stage)"),
    Role("image-encoder", "encoder", ImageEncoder, "E(image) -> (mu, logvar); z_dim"),
    Role("latent-regressor", "encoder", None, "R(image) -> z (N x latent_dim): a reverser / inverse generator"),
    Role("image-discriminator", "discriminator", ImageDiscriminator,
         "D(image, **conditioning) -> scores; output (logits|probabilities), conditioning"),
    Role("feature-attention", "layer", FeatureAttention, "layer(features, mask, **context) -> features"),
    Role("latent-transform", "layer", LatentTransform, "T(z) -> z (may add an aux loss); latent_dim"),
    Role("introspective-loss", "loss", None,
         "loss(mu, logvar, x, x_r) terms of IntroVAE: KL, margin hinge, L_AE (introvae.algorithm)"),
    Role("landmark-renderer", "layer", None, "render(landmarks N x 68 x 2 in [0, 1], size) -> N x k x size x size"),
    Role("gan-loss", "loss", GANLossRole, "loss.d(real, fake), loss.g(fake, real); expects"),
    Role("algorithm", "algorithm", None, "networks, optimizers and phases run by the engine"),
)}


# --- which roles an entry provides ---------------------------------------------------------------
def derive_roles(kind: str, factory: Any) -> tuple[str, ...]:
    """Roles of a registration that did not list them: the class's ``roles`` attribute, else what
    its kind and forward signature make certain (an encoder kind is an image encoder, ...)."""
    declared = getattr(factory, "roles", None)
    if isinstance(declared, (tuple, list)):
        return tuple(declared)
    if kind == "encoder":
        return ("image-encoder",)
    if kind == "discriminator":
        return ("image-discriminator",)
    if kind == "algorithm":
        return ("algorithm",)
    if kind == "loss":
        from genfw.core.losses import GANLoss

        return ("gan-loss",) if inspect.isclass(factory) and issubclass(factory, GANLoss) else ()
    if kind == "generator" and inspect.isclass(factory) and issubclass(factory, torch.nn.Module):
        params = list(inspect.signature(factory.forward).parameters)[1:]
        if params[:1] == ["z"]:
            return ("latent-generator",)
        if "mask" in params[:2]:
            return ("masked-generator",)
    return ()


STATIC_TRAITS = ("output_range", "output", "conditioning", "requires")


def derive_traits(factory: Any) -> dict[str, Any]:
    """Static traits a class declares as class attributes (listings and `fits` use them)."""
    if not inspect.isclass(factory):
        return {}
    out = {}
    for name in STATIC_TRAITS:
        value = getattr(factory, name, None)
        if isinstance(value, (str, frozenset, set, tuple)):
            out[name] = value
    return out


def fits(registry, role: str, exclude: str = "", need: Mapping[str, Any] | None = None,
         provides: Iterable[str] | None = None) -> list[str]:
    """Registered components that provide `role`, whose static traits (``Entry.traits``) do not
    contradict `need`, and that need no context beyond what the slot `provides` (landmarks, stage, ...)."""
    out = []
    given = set(provides or ())
    for e in registry.entries(ROLES[role].kind if role in ROLES else None):
        if role not in getattr(e, "roles", ()) or e.name == exclude:
            continue
        static = getattr(e, "traits", {}) or {}
        # a tuple ("one of") or a conditioning need must be met by a declared trait; others only
        # exclude what contradicts them
        if need and any((k in static or isinstance(v, tuple) or k == "conditioning")
                        and not _meets(k, static.get(k), v) for k, v in need.items()):
            continue
        if not set(static.get("requires", ())) <= given:
            continue
        out.append(e.name)
    return out


def _fits_text(registry, role: str, exclude: str = "", need: Mapping[str, Any] | None = None,
               provides: Iterable[str] | None = None) -> str:
    names = fits(registry, role, exclude, need, provides)
    return f"; components that fit: {', '.join(names)}" if names else f"; no registered component is a {role}"


# --- traits --------------------------------------------------------------------------------------
def trait(module: Any, name: str) -> Any:
    """A declared trait of a built component (None when it does not declare it)."""
    value = getattr(module, name, None)
    if name == "conditioning" and value is not None:
        return frozenset(value)
    return value


def _meets(name: str, have: Any, want: Any) -> bool:
    if name == "conditioning":  # the slot passes `want`; the component must accept all of it
        return set(want) <= set(have or ())
    if isinstance(want, tuple):  # one of these, declared
        return have in want
    return have == want or (name == "output_range" and have == "unbounded")


_FIX = {
    ("output_range", "unit"): 'wrap it: {type = "core.range", to = "unit", generator = {...}}',
    ("output_range", "signed"): 'wrap it: {type = "core.range", to = "signed", generator = {...}}',
    ("output", "probabilities"): 'wrap it: {type = "core.probabilities", discriminator = {...}}',
    ("output", "logits"): "use a discriminator that outputs logits, or a loss that takes probabilities",
}


def check_traits(module: Any, need: Mapping[str, Any], *, path: str, name: str, role: str, registry=None,
                 fix: Mapping[str, str] | None = None) -> None:
    """Raise one ConfigError line when a declared trait contradicts what the slot needs."""
    for key, want in need.items():
        if want is None:
            continue
        have = trait(module, key)
        if key == "conditioning":
            missing = sorted(set(want) - set(have or ()))
            if missing:
                hint = (fix or {}).get(key, "")
                raise ConfigError(
                    f"{path} ({name}): this slot passes {', '.join(missing)} but the {role} does not take "
                    f"{'it' if len(missing) == 1 else 'them'}" + (f"; {hint}" if hint else "")
                    + (_fits_text(registry, role, name, {key: want}, provides=want) if registry else ""))
            continue
        if have is None or have == want or (key == "output_range" and have == "unbounded"):
            continue  # undeclared traits are not guessed
        hint = (fix or {}).get(key) or _FIX.get((key, want), "")
        raise ConfigError(
            f"{path} ({name}): {key} is {have!r} but this slot needs {want!r}" + (f"; {hint}" if hint else "")
            + (_fits_text(registry, role, name, {key: want}) if registry else ""))


# --- building a slot -----------------------------------------------------------------------------
_BUILDING: contextvars.ContextVar[str] = contextvars.ContextVar("genfw_slot_path", default="")


def sub_path(key: str, owner: str) -> str:
    """Config path of a nested slot `key` of the component being built (``algorithm.refine`` +
    ``attention``); `owner` (its registered name) when it is built outside any slot."""
    parent = _BUILDING.get()
    return f"{parent or owner}.{key}"


SLOT_KEYS = {"latent-generator": ("latent_transform",)}  # keys of the slot, not of the component


def slot_keys(registry, spec: Any) -> tuple[str, ...]:
    """Keys of a component table that belong to the slot (for the roles its type provides)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        return ()
    try:
        roles = getattr(registry.get(spec["type"]), "roles", ())
    except UnknownComponentError:
        return ()
    return tuple(k for r in roles for k in SLOT_KEYS.get(r, ()))


def _entry_for(registry, spec: Mapping[str, Any], role: str, path: str):
    kind = ROLES[role].kind
    name = str(spec.get("type", ""))
    try:
        return registry.get(name, kind)
    except UnknownComponentError as first:
        try:  # a component of another kind: say which role it plays instead of "unknown"
            other = registry.get(name)
        except UnknownComponentError:
            raise ConfigError(f"{path}: {first}") from None
        plays = ", ".join(getattr(other, "roles", ())) or other.kind
        raise ConfigError(f"{path} ({other.name}): a {plays}, not a {role}{_fits_text(registry, role)}") from None


def build_slot(registry, spec: Mapping[str, Any] | str, *, role: str, path: str,
               hints: Mapping[str, Any] | None = None, need: Mapping[str, Any] | None = None,
               fix: Mapping[str, str] | None = None, probe: Callable[[Any], str | None] | None = None) -> Any:
    """Build the component in slot `path`, which accepts `role`; check `need` against its traits.

    `hints` are build defaults from the parent (the data's size, a feature width). `probe(module)`
    may run a tiny forward and return a problem description. A latent-generator slot also takes
    ``latent_transform = {type = ...}``: the transform (e.g. ``lis.module``) is built with the
    generator's latent_dim and put in front of it (only for prior noise, from_prior=True).
    """
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{path}: expected a table with a 'type' key (a {role}), got {spec!r}")
    body = {k: v for k, v in spec.items() if k not in SLOT_KEYS.get(role, ())}
    entry = _entry_for(registry, body, role, path)
    if role not in getattr(entry, "roles", ()):
        plays = ", ".join(getattr(entry, "roles", ())) or "no declared role"
        raise ConfigError(f"{path} ({entry.name}): provides {plays}, not {role}{_fits_text(registry, role, entry.name)}")
    token = _BUILDING.set(path)
    try:
        module = registry.build(body, kind=entry.kind, defaults=hints, path=path)
    except GenfwError:
        raise
    except (ValueError, TypeError, RuntimeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path} ({entry.name}): {exc}") from None
    finally:
        _BUILDING.reset(token)
    check_traits(module, need or {}, path=path, name=entry.name, role=role, registry=registry, fix=fix)
    if probe is not None:
        problem = probe(module)
        if problem:
            raise ConfigError(f"{path} ({entry.name}): {problem}")
    transform = spec.get("latent_transform") if role == "latent-generator" else None
    if transform:
        from genfw.core.adapters import LatentTransformed

        latent = trait(module, "latent_dim")
        if not isinstance(latent, int):
            raise ConfigError(f"{path} ({entry.name}): a latent transform needs the generator's int latent_dim")
        t = build_slot(registry, transform, role="latent-transform", path=f"{path}.latent_transform",
                       hints={"latent_dim": latent}, need={"latent_dim": latent})
        module = LatentTransformed(module, t)
    return module


# --- probes: one tiny forward that catches shape mismatches at build time -------------------------
def probe_latent_generator(channels: int, size: int | tuple[int, int]) -> Callable[[Any], str | None]:
    """Probe: G(zeros(2, latent_dim)) must be 2 x channels x size x size."""
    hw = (size, size) if isinstance(size, int) else tuple(size)

    def probe(module) -> str | None:
        latent = trait(module, "latent_dim")
        if not isinstance(latent, int):
            return "a latent generator must expose an int attribute latent_dim (the size of z)"
        with _probing(module):
            try:
                out = module(torch.zeros(2, latent, device=_device(module)), from_prior=True)
            except Exception as exc:  # noqa: BLE001 - reported as the slot's problem
                return f"a forward on z of size {latent} failed: {_short(exc)}"
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            return "a latent generator must return an N x C x H x W image batch"
        if out.shape[1] != channels or tuple(out.shape[-2:]) != hw:
            return (f"makes {out.shape[1]} x {out.shape[2]} x {out.shape[3]} images but the data is "
                    f"{channels} x {hw[0]} x {hw[1]}; set its channels / image_size (or leave them to the data)")
        return None
    return probe


def probe_discriminator(channels: int, size: int | tuple[int, int], **conditioning: Any) -> Callable[[Any], str | None]:
    """Probe: D(image of the data's shape, **conditioning) must run and return scores."""
    hw = (size, size) if isinstance(size, int) else tuple(size)

    def probe(module) -> str | None:
        with _probing(module):
            try:
                out = module(torch.zeros(2, channels, *hw, device=_device(module)), **conditioning)
            except Exception as exc:  # noqa: BLE001
                return f"a forward on {channels} x {hw[0]} x {hw[1]} images failed: {_short(exc)}"
        if not isinstance(out, torch.Tensor) or out.shape[:1] != (2,):
            return "a discriminator must return one score (or a score map) per image"
        return None
    return probe


def probe_encoder(channels: int, size: int | tuple[int, int], z_dim: int | None = None) -> Callable[[Any], str | None]:
    hw = (size, size) if isinstance(size, int) else tuple(size)

    def probe(module) -> str | None:
        with _probing(module):
            try:
                out = module(torch.zeros(2, channels, *hw, device=_device(module)))
            except Exception as exc:  # noqa: BLE001
                return f"a forward on {channels} x {hw[0]} x {hw[1]} images failed: {_short(exc)}"
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            return "an image encoder must return (mu, logvar)"
        if z_dim is not None and out[0].shape[-1] != z_dim:
            return (f"encodes to z_dim {out[0].shape[-1]} but the decoder's latent_dim is {z_dim}; "
                    "set both z_dim equal")
        return None
    return probe


class _probing:
    """Eval mode, no grad, and no side effects on BatchNorm statistics or pending aux losses."""

    def __init__(self, module) -> None:
        self.module = module

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc):
        torch.set_grad_enabled(self.grad)
        for m, mode in self.modes:
            m.training = mode
        return False


def _device(module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# --- slot declarations (for `genfw components --slots` and the all-pairs test) --------------------
@attrs.frozen
class Slot:
    key: str       # config key of the owner (dotted for nested tables)
    role: str
    help: str = ""
    provides: tuple = ()    # context the owner passes (landmarks, attributes, stage, alpha)
    need: Mapping[str, Any] = attrs.field(factory=dict)  # static traits it always needs (tuple: one of)
    enabled_by: str = ""    # a boolean option of the owner that switches the slot on
    optional: bool = False  # an empty table / absent key means "none"
    # other settings of the owner under which the slot passes less, e.g.
    # ({"discriminator_conditioning": "none"}, provides=(), need={}): (settings, provides, need) triples
    alternatives: tuple = ()


def slots_of(entry) -> list[Slot]:
    """The slots a registered algorithm or network declares (its factory's ``slots`` attribute)."""
    declared = getattr(entry, "slots", None) or getattr(entry.factory, "slots", None) or ()
    return [s if isinstance(s, Slot) else Slot(*s) for s in declared]


def slot_table(registry) -> list[dict]:
    """Every declared slot with the role it takes and the registered components that fit it."""
    rows = []
    for e in registry.entries():
        for s in slots_of(e):
            direct = fits(registry, s.role, need=s.need, provides=s.provides)
            alts = []
            for settings, provides, need in s.alternatives:
                more = [n for n in fits(registry, s.role, need=need, provides=provides) if n not in direct]
                if more:
                    alts.append({"set": dict(settings), "fits": more})
            rows.append({"owner": e.name, "kind": e.kind, "slot": s.key, "role": s.role, "help": s.help,
                         "provides": list(s.provides), "enabled_by": s.enabled_by, "fits": direct,
                         "fits_with": alts})
    return rows


def roles_of(entry) -> tuple[str, ...]:
    return tuple(getattr(entry, "roles", ()) or ())


def describe_roles(names: Iterable[str] | None = None) -> list[dict]:
    out = []
    for r in ROLES.values():
        if names is None or r.name in names:
            out.append({"role": r.name, "kind": r.kind, "help": r.help,
                        "doc": inspect.getdoc(r.protocol) if r.protocol else ""})
    return out
