"""Checkpoints: a directory of safetensors + JSON, written atomically, loaded without running code.

Layout of ``OUT/checkpoints/<step:08d>/``:
  networks.safetensors    "<net>/<state_dict key>" for every trainable network
  optimizers.safetensors  tensors of every optimizer, scheduler and the grad scaler state
  optimizers.json         the rest of those states; tensors appear as {"__tensor__": key}
  algorithm.safetensors   Algorithm.extra_tensors()
  state.json              step, images, RNG states, data position, extra_state, config, versions
  ranks.json              (several processes) every rank's RNG states, data position, extra_state
  ranks.safetensors       (several processes) every rank's extra_tensors, as "rank<r>/<key>"
``OUT/checkpoints/latest`` holds the name of the newest complete checkpoint directory.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genfw.core.errors import GenfwError

FORMAT_VERSION = 1
LATEST = "latest"


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
def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # safetensors refuses shared or strided storage; each tensor gets its own contiguous copy
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))


def network_tensors(algo) -> dict[str, torch.Tensor]:
    return {f"{name}/{k}": v for name, net in algo.nets.items() for k, v in net.state_dict().items()}


def save_checkpoint(ckpt_root: str | Path, algo, *, step: int, images: int, data_position: int,
                    config: Mapping[str, Any], context: Mapping[str, Any] | None = None,
                    scaler: torch.amp.GradScaler | None = None, generators: Mapping[str, torch.Generator] | None = None,
                    keep_last: int = 0, extra: Mapping[str, Any] | None = None,
                    rank_states: list[Mapping[str, Any]] | None = None) -> Path:
    """Write checkpoint `step` under `ckpt_root`, point `latest` at it, prune to `keep_last`.

    `rank_states` (one per process, see `rank_state_files`) go into the same directory, so they
    are renamed into place with everything else."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        _save_tensors(network_tensors(algo), tmp / "networks.safetensors")
        opt_tensors: dict[str, torch.Tensor] = {}
        opt_tree = {
            "optimizers": {n: split_state(o.state_dict(), f"optimizers/{n}", opt_tensors)
                           for n, o in algo.optimizers.items()},
            "schedulers": {n: split_state(s.state_dict(), f"schedulers/{n}", opt_tensors)
                           for n, s in algo.schedulers.items()},
            "scaler": split_state(scaler.state_dict(), "scaler", opt_tensors) if scaler is not None else {},
        }
        _save_tensors(opt_tensors, tmp / "optimizers.safetensors")
        _write_json(tmp / "optimizers.json", opt_tree)
        _save_tensors(dict(algo.extra_tensors()), tmp / "algorithm.safetensors")
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
        _write_json(tmp / "state.json", state)
        for fname, data in (rank_state_files(rank_states) if rank_states else {}).items():
            (tmp / fname).write_bytes(data)
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # same step saved again (e.g. Ctrl-C right after a scheduled save)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(root, name)
    _fsync_dir(root)
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


def read_rank_state(ckpt: str | Path, rank: int) -> dict | None:
    """Rank `rank`'s saved state with its tensors, or None when the checkpoint has no entry for it
    (written by one process, by fewer processes, or before per-rank state existed)."""
    from safetensors import safe_open

    ckpt = Path(ckpt)
    path = ckpt / RANKS_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        entry = next((e for e in data["ranks"] if int(e["rank"]) == int(rank)), None)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise GenfwError(f"cannot read per-rank state {path}: {exc}") from None
    if entry is None:
        return None
    prefix = f"rank{int(rank)}/"
    tensors = {}
    tpath = ckpt / RANKS_TENSORS
    if tpath.is_file():
        with safe_open(str(tpath), framework="pt") as fh:
            for key in fh.keys():
                if key.startswith(prefix):
                    tensors[key[len(prefix):]] = fh.get_tensor(key)
    return {**entry, "tensors": tensors}


def _point_latest(root: Path, name: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".latest-", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST)


def complete_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / "state.json").is_file())


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints (and always the one `latest` names); drop temp dirs."""
    keep = {p.name for p in complete_checkpoints(root)[-keep_last:]}
    latest = root / LATEST
    if latest.is_file():
        keep.add(latest.read_text().strip())
    for p in complete_checkpoints(root):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-*"):  # left by a killed writer
        shutil.rmtree(p, ignore_errors=True)


# --- find / load --------------------------------------------------------------------------------
def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run dir, a checkpoints dir or a checkpoint dir itself."""
    p = Path(path).expanduser()
    if not p.exists():
        raise GenfwError(f"no such run or checkpoint: {p}")
    if (p / "state.json").is_file():
        return p
    for root in (p / "checkpoints", p):
        latest = root / LATEST
        if latest.is_file():
            cand = root / latest.read_text().strip()
            if (cand / "state.json").is_file():
                return cand
        found = complete_checkpoints(root)
        if found:
            return found[-1]
    raise GenfwError(f"{p} has no checkpoint (expected {p}/checkpoints/latest or a dir with state.json)")


def read_state(ckpt: str | Path) -> dict:
    p = Path(ckpt) / "state.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenfwError(f"cannot read checkpoint state {p}: {exc}") from None


def _load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GenfwError(f"checkpoint file missing: {path}")
    return load_file(str(path), device=str(device))


def load_networks(ckpt: Path, algo, strict: bool = True) -> None:
    tensors = _load_tensors(ckpt / "networks.safetensors")
    for name, net in algo.nets.items():
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + "/")}
        if not sub and strict:
            raise GenfwError(f"checkpoint {ckpt} has no weights for network {name!r}")
        try:
            net.load_state_dict(sub, strict=strict)
        except RuntimeError as exc:
            raise GenfwError(f"checkpoint {ckpt} does not fit network {name!r}: "
                             f"{str(exc).splitlines()[0]}") from None


def load_checkpoint(ckpt: str | Path, algo, *, scaler: torch.amp.GradScaler | None = None,
                    generators: Mapping[str, torch.Generator] | None = None,
                    restore_rng: bool = True, training_state: bool = True) -> dict:
    """Load weights (and, with training_state, optimizers, schedulers, scaler, algorithm state and
    RNG) into a set-up algorithm; returns state.json."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    load_networks(ckpt, algo)
    extra_tensors = _load_tensors(ckpt / "algorithm.safetensors") if (ckpt / "algorithm.safetensors").is_file() else {}
    algo.load_extra(join_state(state.get("algorithm", {}), {}), extra_tensors)
    if not training_state:
        return state
    tensors = _load_tensors(ckpt / "optimizers.safetensors")
    tree = json.loads((ckpt / "optimizers.json").read_text())
    tree = join_state(tree, tensors)
    for n, opt in algo.optimizers.items():
        if n in tree["optimizers"]:
            opt.load_state_dict(tree["optimizers"][n])
    for n, sched in algo.schedulers.items():
        if n in tree["schedulers"]:
            sched.load_state_dict(tree["schedulers"][n])
    if scaler is not None and tree.get("scaler"):
        scaler.load_state_dict(tree["scaler"])
    if restore_rng:
        set_rng_state(state["rng"], generators)
    return state


def load_run(path: str, device: str = "auto", registry=None):
    """(algorithm in eval mode with the checkpoint's weights, RunConfig) from a run or checkpoint dir."""
    from genfw.core.algorithm import Context
    from genfw.core.config import RunConfig, structure
    from genfw.core.trainer import resolve_device

    ckpt = find_checkpoint(path)
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
    ctx = Context(registry=registry, device=dev, **ctx_fields)
    algo.setup(ctx)
    load_checkpoint(ckpt, algo, training_state=False, restore_rng=False)
    for net in algo.nets.values():
        net.eval()
    algo.checkpoint_dir = str(ckpt)
    algo.checkpoint_step = int(state.get("step", 0))
    return algo, cfg
