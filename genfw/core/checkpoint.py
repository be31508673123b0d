"""Checkpoints: a directory of safetensors + JSON, written atomically, loaded without running code.

Layout of ``OUT/checkpoints/<step:08d>/``:
  networks.safetensors    "<net>/<state_dict key>" for every trainable network
  optimizers.safetensors  tensors of every optimizer, scheduler and the grad scaler state
  optimizers.json         the rest of those states; tensors appear as {"__tensor__": key}
  algorithm.safetensors   Algorithm.extra_tensors()
  state.json              step, images, RNG states, data position, extra_state, config, versions,
                          and "integrity": the sha256 of every other file and of state.json's own
                          content, checked before anything is loaded
  ranks.json              (several processes) every rank's RNG states, data position, extra_state
  ranks.safetensors       (several processes) every rank's extra_tensors, as "rank<r>/<key>"
``OUT/checkpoints/latest`` holds the name of the newest complete checkpoint directory.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load as load_bytes, save as save_bytes

from genfw.core.atomic import dir_mode, fsync_dir, replace_file, write_new
from genfw.core.errors import GenfwError

FORMAT_VERSION = 2  # 2: state.json carries "integrity" (sha256 of every file); 1 loads unverified
LATEST = "latest"
TENSOR_FILES = ("networks.safetensors", "optimizers.safetensors", "algorithm.safetensors")


class CheckpointError(GenfwError):
    """A checkpoint that cannot be used: missing or unreadable file, failed sha256, bad state.json."""


class DamagedCheckpointError(CheckpointError):
    """The checkpoint's bytes are wrong (missing, unreadable, failed sha256, malformed, NaN weights):
    --resume skips it. A checkpoint that is intact but does not fit the run is a plain
    CheckpointError, and stops --resume instead (an older one would not fit either)."""


class NonFiniteStateError(GenfwError):
    """Weights, buffers or optimizer state hold NaN/Inf: such a state is never checkpointed."""


# --- nested state <-> (JSON tree, flat tensors) ---------------------------------------------------
def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Pull tensors out of a nested state (optimizer/scheduler state_dict) into `tensors`.

    Dicts with non-string keys (optimizer state is keyed by int) become {"__items__": [[k, v], ...]}
    so JSON does not turn the keys into strings; tuples become lists.
    """
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: split_state(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, split_state(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at '{prefix}' in a checkpoint (JSON + tensors only)")


def join_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: join_state(v, tensors) for k, v in obj["__items__"]}
        return {k: join_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj


# --- RNG states as JSON -------------------------------------------------------------------------
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state(extra: Mapping[str, torch.Generator] | None = None) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "generators": {k: _b64(g.get_state()) for k, g in (extra or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: Mapping[str, Any], extra: Mapping[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    for k, g in (extra or {}).items():
        if k in state.get("generators", {}):
            g.set_state(_unb64(state["generators"][k]))
    if "cuda" in state and torch.cuda.is_available():
        states = [_unb64(s) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# --- versions -----------------------------------------------------------------------------------
def versions() -> dict:
    import importlib.metadata as md

    import genfw

    plugins = {}
    for ep in md.entry_points(group="genfw"):
        plugins.setdefault(ep.name, ep.dist.version if ep.dist is not None else "")
    return {"genfw": genfw.__version__, "torch": torch.__version__, "plugins": plugins}


# --- save ---------------------------------------------------------------------------------------
def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=False, allow_nan=False).encode("utf-8")


def _canonical_digest(state: Mapping[str, Any]) -> str:
    """sha256 of state.json's content without its own "integrity" entry, independent of layout."""
    body = {k: v for k, v in state.items() if k != "integrity"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fsync_dir(path: Path) -> None:
    fsync_dir(path)


def _tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    # safetensors refuses shared or strided storage; each tensor gets its own contiguous copy
    return save_bytes({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def network_tensors(algo) -> dict[str, torch.Tensor]:
    return {f"{name}/{k}": v for name, net in algo.nets.items() for k, v in net.state_dict().items()}


# --- the finite-state guard -------------------------------------------------------------------
def _named_state_tensors(algo, scaler=None):
    """(owner, tensor name, tensor) for every floating tensor a checkpoint would hold."""
    for name, net in algo.nets.items():
        for k, t in net.state_dict().items():
            yield f"network '{name}'", k, t
    for name, opt in algo.optimizers.items():
        params = {id(p): pn for pn, p in algo.nets[name].named_parameters()} if name in algo.nets else {}
        for group in opt.param_groups:
            for p in group["params"]:
                for k, t in opt.state.get(p, {}).items():
                    if isinstance(t, torch.Tensor):
                        yield f"optimizer '{name}'", f"{params.get(id(p), 'param')}.{k}", t
    for k, t in dict(algo.extra_tensors()).items():
        yield "algorithm extra tensors", k, t


def find_non_finite(algo, scaler=None) -> list[tuple[str, str, str]]:
    """[(owner, tensor, 'nan'|'inf')] for every weight, buffer, optimizer state and algorithm tensor
    holding NaN or Inf; [] when all are finite.

    One isfinite reduction per tensor and a single device sync for the whole state: the common,
    all-finite case costs one pass over the bytes a checkpoint writes anyway.
    """
    items = [(o, n, t) for o, n, t in _named_state_tensors(algo, scaler)
             if t.is_floating_point() or t.is_complex()]
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, _, t) in enumerate(items):
        by_device.setdefault(t.device, []).append(i)
    bad: list[int] = []
    for idx in by_device.values():
        flags = torch.stack([torch.isfinite(items[i][2].detach()).all() for i in idx]).cpu()
        bad += [idx[j] for j in (~flags).nonzero().flatten().tolist()]
    out = []
    for i in sorted(bad):
        o, n, t = items[i]
        out.append((o, n, "nan" if bool(torch.isnan(t).any()) else "inf"))
    return out


def check_finite_state(algo, scaler=None, step: int | None = None) -> None:
    """NonFiniteStateError naming the first bad network/tensor (and how many more) if any."""
    bad = find_non_finite(algo, scaler)
    if not bad:
        return
    owner, name, kind = bad[0]
    per_owner: dict[str, int] = {}
    for o, _, _ in bad:
        per_owner[o] = per_owner.get(o, 0) + 1
    counts = ", ".join(f"{o}: {c}" for o, c in per_owner.items())
    at = f" after step {step}" if step is not None else ""
    raise NonFiniteStateError(f"{owner} tensor '{name}' is {kind}{at} ({len(bad)} non-finite tensors; {counts}); "
                              "the run diverged and this state was not checkpointed — lower the learning rate "
                              "or enable train.grad_clip")


def save_checkpoint(ckpt_root: str | Path, algo, *, step: int, images: int, data_position: int,
                    config: Mapping[str, Any], context: Mapping[str, Any] | None = None,
                    scaler: torch.amp.GradScaler | None = None, generators: Mapping[str, torch.Generator] | None = None,
                    keep_last: int = 0, extra: Mapping[str, Any] | None = None,
                    rank_states: list[Mapping[str, Any]] | None = None) -> Path:
    """Write checkpoint `step` under `ckpt_root`, point `latest` at it, prune to `keep_last`.

    Every file's sha256 goes into state.json (written last), so a checkpoint is complete and
    verifiable once state.json exists. The caller checks the state is finite first
    (`check_finite_state`); the trainer does. `rank_states` (one per process, see
    `rank_state_files`) become two more files of the same directory, under the same sha256 scheme.
    """
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp makes 0700 whatever the umask says
        files: dict[str, bytes] = {"networks.safetensors": _tensor_bytes(network_tensors(algo))}
        opt_tensors: dict[str, torch.Tensor] = {}
        opt_tree = {
            "optimizers": {n: split_state(o.state_dict(), f"optimizers/{n}", opt_tensors)
                           for n, o in algo.optimizers.items()},
            "schedulers": {n: split_state(s.state_dict(), f"schedulers/{n}", opt_tensors)
                           for n, s in algo.schedulers.items()},
            "scaler": split_state(scaler.state_dict(), "scaler", opt_tensors) if scaler is not None else {},
        }
        files["optimizers.safetensors"] = _tensor_bytes(opt_tensors)
        files["optimizers.json"] = _json_bytes(opt_tree)
        files["algorithm.safetensors"] = _tensor_bytes(dict(algo.extra_tensors()))
        stray: dict[str, torch.Tensor] = {}
        state = {
            "format": FORMAT_VERSION,
            "step": int(step),
            "images": int(images),
            "data_position": int(data_position),
            "time": time.time(),
            "rng": rng_state(generators),
            "algorithm": split_state(dict(algo.extra_state()), "extra_state", stray),
            "context": dict(context or {}),
            "config": dict(config),
            "versions": versions(),
            **dict(extra or {}),
        }
        if stray:
            raise TypeError(f"{type(algo).__name__}.extra_state() holds tensors ({', '.join(stray)}); "
                            "return them from extra_tensors() instead")
        if rank_states:
            files.update(rank_state_files(rank_states))
        for fname, data in files.items():
            write_new(tmp / fname, data)
        state["integrity"] = {"sha256": {f: hashlib.sha256(d).hexdigest() for f, d in files.items()},
                              "bytes": {f: len(d) for f, d in files.items()},
                              "state_sha256": _canonical_digest(state)}
        write_new(tmp / "state.json", _json_bytes(state))
        _fsync_dir(tmp)
        if final.exists():  # same step saved again (e.g. Ctrl-C right after a scheduled save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)  # the directory rename is durable before `latest` can name it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(root, name)
    if keep_last > 0:
        prune(root, keep_last)
    return final


RANKS_JSON, RANKS_TENSORS = "ranks.json", "ranks.safetensors"


def rank_state_files(rank_states: list[Mapping[str, Any]]) -> dict[str, bytes]:
    """Per-process state as the bytes of ranks.json and ranks.safetensors. Each entry is {"rank",
    "rng", "data_position", "algorithm" (JSON), "tensors" (name -> tensor)}; the tensors are stored
    as "rank<r>/<name>"."""
    from safetensors.torch import save as tensor_bytes

    entries, tensors = [], {}
    for st in rank_states:
        r = int(st["rank"])
        for k, v in dict(st.get("tensors") or {}).items():
            tensors[f"rank{r}/{k}"] = v.detach().cpu().contiguous().clone()
        stray: dict[str, torch.Tensor] = {}
        entry = split_state({k: v for k, v in st.items() if k != "tensors"}, f"rank{r}", stray)
        if stray:
            raise TypeError(f"rank {r} state holds tensors outside 'tensors' ({', '.join(stray)})")
        entries.append(entry)
    return {RANKS_TENSORS: tensor_bytes(tensors),
            RANKS_JSON: json.dumps({"world_size": len(entries), "ranks": entries}, indent=1).encode("utf-8")}


def read_rank_state(ckpt: str | Path, rank: int, state: Mapping[str, Any] | None = None) -> dict | None:
    """Rank `rank`'s saved state with its tensors, or None when the checkpoint has no entry for it
    (written by one process, by fewer processes, or before per-rank state existed). The files are
    checked against the sha256 state.json records for them, like every other file."""
    ckpt = Path(ckpt)
    if not (ckpt / RANKS_JSON).is_file():
        return None
    state = read_state(ckpt) if state is None else state
    path = ckpt / RANKS_JSON
    try:
        data = json.loads(_file_bytes(ckpt, RANKS_JSON, state).decode("utf-8"))
        entry = next((e for e in data["ranks"] if int(e["rank"]) == int(rank)), None)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DamagedCheckpointError(f"checkpoint file {path} is malformed ({exc}); the file is damaged") from None
    if entry is None:
        return None
    prefix = f"rank{int(rank)}/"
    tensors = {k[len(prefix):]: v for k, v in _tensors(ckpt, RANKS_TENSORS, state).items() if k.startswith(prefix)}
    return {**entry, "tensors": tensors}


def _verify_rank_files(ckpt: Path, state: Mapping[str, Any]) -> None:
    """A multi-process checkpoint is only usable with its per-rank files intact."""
    recorded = ((state.get("integrity") or {}).get("sha256") or {}) if isinstance(state.get("integrity"), dict) else {}
    for name in (RANKS_JSON, RANKS_TENSORS):
        if name in recorded:
            _file_bytes(ckpt, name, state)


def _point_latest(root: Path, name: str) -> None:
    replace_file(root / LATEST, name + "\n", prefix=".latest-")


def complete_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / "state.json").is_file())


def read_latest(root: Path, warn: bool = True) -> Path | None:
    """The checkpoint dir `root/latest` names, or None. The name must be a checkpoint directory
    directly inside `root` (no paths, no `..`): anything else is ignored with a warning."""
    latest = root / LATEST
    if not latest.is_file():
        return None
    try:
        text = latest.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    cand = root / text
    if not text.isdigit() or cand.parent != root or not (cand / "state.json").is_file():
        if warn:
            print(f"warning: {latest} names {text[:80]!r}, which is not a checkpoint directory of this run; "
                  "ignoring it", file=sys.stderr)
        return None
    return cand


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints (and always the one `latest` names); drop the temp
    dirs and `.latest-*` files a killed writer left. Only the run's lock holder writes here, so
    any temp file present is a leftover."""
    keep = {p.name for p in complete_checkpoints(root)[-keep_last:]}
    named = read_latest(root, warn=False)
    if named is not None:
        keep.add(named.name)
    for p in complete_checkpoints(root):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".latest-*"):
        try:
            p.unlink()
        except OSError:
            pass


# --- find / load --------------------------------------------------------------------------------
def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run dir, a checkpoints dir or a checkpoint dir itself."""
    p = Path(path).expanduser()
    if not p.exists():
        raise GenfwError(f"no such run or checkpoint: {p}")
    if (p / "state.json").is_file():
        return p
    for root in (p / "checkpoints", p):
        named = read_latest(root)
        if named is not None:
            return named
        found = complete_checkpoints(root)
        if found:
            return found[-1]
    raise GenfwError(f"{p} has no checkpoint (expected {p}/checkpoints/latest or a dir with state.json)")


def _check_state_fields(state: Any, p: Path) -> None:
    """state.json's own fields have the types the loader relies on (hand edits, other tools)."""
    if not isinstance(state, dict):
        raise DamagedCheckpointError(f"checkpoint state {p} is not a JSON object")
    for key in ("step", "images", "data_position"):
        val = state.get(key)
        if isinstance(val, bool) or not isinstance(val, int) or val < 0:
            raise DamagedCheckpointError(f"checkpoint state {p}: '{key}' must be a non-negative integer, got {val!r}")
    rng = state.get("rng")
    if not isinstance(rng, dict) or not all(k in rng for k in ("torch", "numpy", "python")):
        raise DamagedCheckpointError(f"checkpoint state {p}: 'rng' (torch, numpy and python states) is missing or "
                              "malformed; the checkpoint cannot resume exactly")
    for key in ("config", "context"):
        if not isinstance(state.get(key, {}), dict):
            raise DamagedCheckpointError(f"checkpoint state {p}: '{key}' must be a table, "
                                         f"got {type(state[key]).__name__}")


def read_state(ckpt: str | Path) -> dict:
    """state.json, parsed, its own sha256 and field types checked; CheckpointError otherwise."""
    p = Path(ckpt) / "state.json"
    try:
        text = p.read_bytes().decode("utf-8")
        state = json.loads(text)
    except OSError as exc:
        raise DamagedCheckpointError(f"cannot read checkpoint state {p}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpointError(f"checkpoint state {p} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(state, dict):
        raise DamagedCheckpointError(f"checkpoint state {p} is not a JSON object")
    integ = state.get("integrity")
    if integ is not None:
        try:
            want = integ["state_sha256"]
            ok = want == _canonical_digest(state)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise DamagedCheckpointError(f"checkpoint state {p} fails its sha256 check (edited or damaged)")
    _check_state_fields(state, p)
    return state


def _file_bytes(ckpt: Path, name: str, state: Mapping[str, Any]) -> bytes:
    """A checkpoint file's bytes, checked against the sha256 state.json recorded for it."""
    path = ckpt / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedCheckpointError(f"checkpoint file missing: {path}") from None
    except OSError as exc:
        raise DamagedCheckpointError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from None
    integ = state.get("integrity")
    if integ is not None:
        want = (integ.get("sha256") or {}).get(name) if isinstance(integ, dict) else None
        if want is None:
            raise DamagedCheckpointError(f"checkpoint {ckpt}: state.json records no sha256 for {name}")
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            size = (integ.get("bytes") or {}).get(name)
            detail = f"{len(data)} bytes, expected {size}" if size is not None and size != len(data) else \
                "content changed"
            raise DamagedCheckpointError(f"checkpoint file {path} fails its sha256 check ({detail}): it is damaged")
    return data


def _tensors(ckpt: Path, name: str, state: Mapping[str, Any], device: str = "cpu") -> dict[str, torch.Tensor]:
    data = _file_bytes(ckpt, name, state)
    try:
        tensors = load_bytes(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for bad files
        raise DamagedCheckpointError(f"checkpoint file {ckpt / name} is not a readable safetensors file: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return {k: v.to(device) for k, v in tensors.items()} if device != "cpu" else tensors


def verify_checkpoint(ckpt: str | Path, training_state: bool = True) -> dict:
    """Check a checkpoint without loading it into anything: state.json and every file it needs
    (all of them with training_state) against their sha256; returns state.json."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    names = ["networks.safetensors", "algorithm.safetensors"]
    if training_state:
        names += ["optimizers.safetensors", "optimizers.json"]
    for name in names:
        if name == "algorithm.safetensors" and not (ckpt / name).is_file() and state.get("integrity") is None:
            continue
        _file_bytes(ckpt, name, state)
    if training_state:
        _verify_rank_files(ckpt, state)
    return state


def _load_networks_from(ckpt: Path, tensors: Mapping[str, torch.Tensor], algo, strict: bool = True) -> None:
    for name, net in algo.nets.items():
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + "/")}
        if not sub and strict:
            raise CheckpointError(f"checkpoint {ckpt} has no weights for network {name!r}")
        bad = [k for k, v in sub.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise DamagedCheckpointError(f"checkpoint {ckpt}: network {name!r} tensor {bad[0]!r} holds NaN/Inf "
                                  f"({len(bad)} such tensors); it was saved from a diverged run — use an older "
                                  "checkpoint")
        try:
            net.load_state_dict(sub, strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {ckpt} does not fit network {name!r}: "
                                  f"{str(exc).splitlines()[0]}") from None


def load_networks(ckpt: Path, algo, strict: bool = True) -> None:
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    _load_networks_from(ckpt, _tensors(ckpt, "networks.safetensors", state), algo, strict)


def load_checkpoint(ckpt: str | Path, algo, *, scaler: torch.amp.GradScaler | None = None,
                    generators: Mapping[str, torch.Generator] | None = None,
                    restore_rng: bool = True, training_state: bool = True) -> dict:
    """Load weights (and, with training_state, optimizers, schedulers, scaler, algorithm state and
    RNG) into a set-up algorithm; returns state.json. Every file is checked against its sha256
    and parsed before anything is loaded; problems are CheckpointError naming the file."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    nets = _tensors(ckpt, "networks.safetensors", state)
    has_extra = (ckpt / "algorithm.safetensors").is_file() or state.get("integrity") is not None
    extra_tensors = _tensors(ckpt, "algorithm.safetensors", state) if has_extra else {}
    tree = None
    if training_state:
        opt_tensors = _tensors(ckpt, "optimizers.safetensors", state)
        opt_json = ckpt / "optimizers.json"
        try:
            tree = join_state(json.loads(_file_bytes(ckpt, "optimizers.json", state).decode("utf-8")), opt_tensors)
            for key in ("optimizers", "schedulers"):
                if not isinstance(tree.get(key), dict):
                    raise ValueError(f"'{key}' is missing")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DamagedCheckpointError(f"checkpoint file {opt_json} is malformed ({exc}); "
                                         "the file is damaged") from None
        _verify_rank_files(ckpt, state)
    _load_networks_from(ckpt, nets, algo)
    try:
        algo.load_extra(join_state(state.get("algorithm", {}), {}), extra_tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt}: the algorithm state does not load ({type(exc).__name__}: "
                              f"{exc})") from None
    if not training_state:
        return state
    try:
        for n, opt in algo.optimizers.items():
            if n in tree["optimizers"]:
                opt.load_state_dict(tree["optimizers"][n])
        for n, sched in algo.schedulers.items():
            if n in tree["schedulers"]:
                sched.load_state_dict(tree["schedulers"][n])
        if scaler is not None and tree.get("scaler"):
            scaler.load_state_dict(tree["scaler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt}: optimizer or scheduler state does not fit this run "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if restore_rng:
        try:
            set_rng_state(state["rng"], generators)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, base64.binascii.Error) as exc:
            raise DamagedCheckpointError(f"checkpoint {ckpt}: the saved random state is malformed "
                                  f"({type(exc).__name__}: {exc})") from None
    return state


def last_good(root: str | Path) -> Path | None:
    """The newest checkpoint under `root` that passes verification (what "last good" means)."""
    for p in reversed(complete_checkpoints(Path(root))):
        try:
            verify_checkpoint(p)
            return p
        except CheckpointError:
            continue
    return None


def resume_candidates(root: Path, warn: bool = True) -> list[Path]:
    """What --resume tries, in order: the checkpoint `latest` names, then the others newest first."""
    named = read_latest(root, warn=warn)
    rest = [p for p in reversed(complete_checkpoints(root)) if named is None or p != named]
    return ([named] if named is not None else []) + rest


def load_for_resume(root: str | Path, algo, *, scaler=None, generators=None, set_aside: bool = True,
                    report=lambda msg: print(msg, file=sys.stderr)) -> tuple[Path, dict]:
    """Load the newest checkpoint that verifies and loads; each damaged one skipped is reported
    with the reason. Once one loads, the skipped ones are renamed `<step>.corrupt` (kept for
    inspection, never tried, pruned or called "last good" again). CheckpointError, renaming
    nothing, when none is usable; a checkpoint that is intact but does not fit this run (changed
    networks) stops the search at once (an older one would not fit either)."""
    root = Path(root)
    skipped: list[Path] = []
    for cand in resume_candidates(root):
        try:
            state = load_checkpoint(cand, algo, scaler=scaler, generators=generators)
        except DamagedCheckpointError as exc:
            report(f"skipped checkpoint {cand.name}: {exc}")
            skipped.append(cand)
            continue
        for bad in skipped if set_aside else []:
            _set_aside(bad, report)
        return cand, state
    if not skipped:
        raise CheckpointError(f"no checkpoint in {root} to resume from")
    raise CheckpointError(f"no usable checkpoint in {root} ({len(skipped)} tried, all damaged: see the lines "
                          "above); nothing was changed: start a fresh run with another --out")


def _set_aside(ckpt: Path, report) -> None:
    aside = ckpt.with_name(ckpt.name + ".corrupt")
    try:
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(ckpt, aside)
        report(f"moved damaged checkpoint {ckpt.name} to {aside.name}")
    except OSError as exc:
        report(f"warning: could not move damaged checkpoint {ckpt} aside: {exc.strerror or exc}")


def load_run(path: str, device: str = "auto", registry=None):
    """(algorithm in eval mode with the checkpoint's weights, RunConfig) from a run or checkpoint dir.
    A checkpoint that fails verification is a one-line CheckpointError naming the file (and the
    run's older checkpoints); nothing is loaded from it."""
    ckpt = find_checkpoint(path)
    try:
        return _load_run(ckpt, device, registry)
    except CheckpointError as exc:
        older = [p.name for p in complete_checkpoints(ckpt.parent) if p.name < ckpt.name]
        hint = f"; older checkpoints to try instead: {', '.join(str(ckpt.parent / n) for n in older[-3:])}" \
            if older else ""
        raise CheckpointError(f"{exc}{hint}") from None


def _load_run(ckpt: Path, device: str, registry):
    from genfw.core.algorithm import Context
    from genfw.core.config import RunConfig, structure
    from genfw.core.trainer import resolve_device

    state = read_state(ckpt)
    if registry is None:
        from genfw.registry import get_registry

        registry = get_registry()
    # the saved mapping is already resolved; only the algorithm is rebuilt, so a run whose dataset
    # plugin is absent here still loads
    cfg = structure(state["config"], RunConfig, path="checkpoint config")
    dev = resolve_device(device if device != "auto" else "auto")
    algo = registry.build(cfg.algorithm, kind="algorithm", path="algorithm")
    ctx_fields = {k: v for k, v in state.get("context", {}).items() if k not in ("registry", "device")}
    try:
        ctx = Context(registry=registry, device=dev, **ctx_fields)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint state {ckpt / 'state.json'}: bad 'context' ({exc})") from None
    algo.setup(ctx)
    load_checkpoint(ckpt, algo, training_state=False, restore_rng=False)
    for net in algo.nets.values():
        net.eval()
    algo.checkpoint_dir = str(ckpt)
    algo.checkpoint_step = int(state.get("step", 0))
    return algo, cfg
