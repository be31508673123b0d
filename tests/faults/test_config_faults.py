"""Bad values for every config field of every registered component (and the run/train tables):
each is a one-line ConfigError naming the key, never a coercion."""
import math
import typing

import attrs
import pytest

import harness
from genfw import ConfigError
from genfw.core.config import RunConfig, TrainConfig, structure

BAD = {
    bool: ["no", "true", 1, 0, 0.5, [True]],
    int: [2.9, "3", True, float("nan"), [1]],
    float: ["x", "1e-4", True, float("nan"), float("inf"), -float("inf"), [1.0]],
    str: [5, 1.5, True, ["a"]],
}


def _base(tp):
    """The scalar type a field holds (Optional[X] -> X), or None for tables / components."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if tp in BAD else None


def _fields(cls):
    attrs.resolve_types(cls)
    for f in attrs.fields(cls):
        base = _base(f.type)
        if base is not None:
            yield f.alias or f.name, base


def _matrix(cls, wrap, label):
    outcomes = []
    for key, base in _fields(cls):
        for bad in BAD[base]:
            data = wrap({key: bad})
            case = f"{label}.{key}={bad!r}"
            try:
                structure(data, RunConfig)
                outcomes.append(harness.record(case, "silent", "accepted"))
            except ConfigError as exc:
                msg = str(exc)
                ok = key in msg and "\n" not in msg
                outcomes.append(harness.record(case, "clean" if ok else "silent", msg))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(harness.record(case, "traceback", repr(exc)))
    return outcomes


def test_run_and_train_fields():
    out = _matrix(RunConfig, lambda d: d, "config") + _matrix(TrainConfig, lambda d: {"train": d}, "train")
    assert len(out) > 60
    harness.assert_clean(out)


def test_seed_out_of_range():
    out = [harness.expect_error(f"seed={s}", lambda s=s: structure({"seed": s}, RunConfig), match="seed")
           for s in (2**63, 2**64, -1)]
    harness.assert_clean(out)


def test_every_component_field():
    from genfw.registry import get_registry

    reg = get_registry()
    outcomes = []
    for entry in reg.entries():
        if entry.config is None or not attrs.has(entry.config):
            continue
        for key, base in _fields(entry.config):
            for bad in BAD[base]:
                case = f"{entry.name}.{key}={bad!r}"
                try:
                    reg.resolve({"type": entry.name, key: bad}, kind=entry.kind)
                    outcomes.append(harness.record(case, "silent", "accepted"))
                except ConfigError as exc:
                    msg = str(exc)
                    ok = key in msg and "\n" not in msg
                    outcomes.append(harness.record(case, "clean" if ok else "silent", msg))
                except Exception as exc:  # noqa: BLE001
                    outcomes.append(harness.record(case, "traceback", repr(exc)))
    assert len(outcomes) > 300
    harness.assert_clean(outcomes)


def test_good_values_still_accepted():
    cfg = structure({"seed": 7, "train": {"steps": 3, "checkpoint_minutes": 1, "grad_clip": 0.5,
                                          "deterministic": True}}, RunConfig)
    assert cfg.train.checkpoint_minutes == 1.0 and isinstance(cfg.train.checkpoint_minutes, float)
    assert cfg.train.deterministic is True and cfg.seed == 7
    assert not math.isnan(cfg.train.grad_clip)
