"""The training loop every algorithm runs in: data order, devices, precision, logging, samples,
checkpoints, exact resume, Ctrl-C and distributed data parallel.

Exact resume rests on three things being a pure function of what a checkpoint stores:
* the data order: one stream of per-epoch permutations for all ranks (``distributed.GlobalOrder``),
  so a checkpoint only needs the stream position, and a resume on another world size carries on
  from it;
* every random stream: torch / numpy / python global RNG, the mask generator's own Generator; the
  DataLoader gets a private Generator so creating its iterator never draws from the global one;
  with several processes every rank's streams are saved (``ranks.json``);
* optimizer, scheduler, scaler and algorithm state, saved at a step boundary only (a Ctrl-C is
  honoured at the next boundary, never mid-step).
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from genfw.core import checkpoint as ckpt_mod
from genfw.core import distributed as ddp
from genfw.core import precision as precision_mod
from genfw.core.atomic import replace_file
from genfw.core.algorithm import Context
from genfw.core.config import RunConfig, dump_toml
from genfw.core.errors import GenfwError
from genfw.core.images import save_grid
from genfw.core.runlock import RunLock
from genfw.core.step import NonFiniteLossError, run_step
from genfw.registry.licences import record_licences


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto -> CUDA when available (the process's local GPU under torchrun), else CPU."""
    name = (name or "auto").strip()
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GenfwError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GenfwError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    elif dev.type != "cpu":
        raise GenfwError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- data order ---------------------------------------------------------------------------------
DataOrder = ddp.DataOrder  # batch k of a run that starts at stream position 0 (see GlobalOrder)


# --- helpers ------------------------------------------------------------------------------------
def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise GenfwError(f"output directory {out} is not writable: {exc.strerror or exc}") from None


def _build_dataset(cfg: RunConfig, registry):
    try:
        ds = registry.build(cfg.data, kind="dataset", path="data")
    except GenfwError:
        raise
    except (OSError, ValueError) as exc:
        raise GenfwError(f"cannot build dataset {cfg.data.get('type', '?')}: {exc}") from None
    try:
        n = len(ds)
    except TypeError:
        raise GenfwError(f"dataset {cfg.data.get('type')} has no length; the engine needs a map-style dataset") from None
    if n == 0:
        raise GenfwError(f"dataset {cfg.data.get('type')} is empty; check its path")
    return ds


def _dataset_facts(ds) -> dict:
    first = None

    def item():
        nonlocal first
        if first is None:
            first = ds[0]
        return first

    image_size = getattr(ds, "image_size", None) or int(item()["image"].shape[-1])
    channels = getattr(ds, "channels", None) or int(item()["image"].shape[0])
    names = list(getattr(ds, "attribute_names", []) or [])
    num_attr = getattr(ds, "num_attributes", None)
    if num_attr is None:
        num_attr = len(names) if names else int(item()["attributes"].numel()) if "attributes" in item() else 0
    has_lm = getattr(ds, "has_landmarks", None)
    if has_lm is None:
        has_lm = "landmarks" in item()
    return {"image_size": int(image_size), "channels": int(channels), "num_attributes": int(num_attr),
            "attribute_names": names, "has_landmarks": bool(has_lm)}


def _allow_random_weights(cfg: RunConfig) -> bool:
    env = os.environ.get("GENFW_ALLOW_RANDOM_WEIGHTS", "").lower() in ("1", "true", "yes")
    return bool(getattr(cfg, "allow_random_weights", False)) or env


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after saving its checkpoint; the CLI exits 128 + signum."""

    def __init__(self, signum: int, checkpoint, message: str) -> None:
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# SIGTERM (kill, schedulers, docker stop) and SIGHUP (a closed terminal) mean "stop" as Ctrl-C does
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _StopFlag:
    """The first SIGINT / SIGTERM / SIGHUP asks for a checkpoint at the next step boundary; a
    second one interrupts at once (no checkpoint)."""

    def __init__(self) -> None:
        self.requested = 0  # the signal number asked for, 0 = none
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = int(signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class Trainer:
    """One run. ``Trainer(...).run()`` is what ``train()`` does; tests keep the trainer to inspect
    ``trainer.algo`` afterwards."""

    def __init__(self, cfg: RunConfig, resolved: dict, registry, *, resume: bool = False,
                 progress: bool = True) -> None:
        self.cfg, self.resolved, self.registry = cfg, dict(resolved), registry
        self.resume, self.progress = resume, progress
        self.algo = None
        self.step = 0
        self.images = 0
        self.position = 0  # batches this rank consumed (= steps: one batch per step)
        self.stream = 0    # data stream position of the next step (all ranks; see GlobalOrder)
        self.elapsed = 0.0
        self._seg_start = time.time()
        self.last_checkpoint = None

    # ---------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        dev_pref = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = ddp.init_distributed("cuda" if dev_pref.startswith("cuda") else "cpu")
        self._lock = None
        try:
            return self._run(cfg, t)
        finally:
            self._unlock()
            ddp.shutdown(self.dist)

    def _policy(self, t):
        """The precision policy. `auto` on --resume keeps what the run chose (OUT/policy.json): a
        timing probe may decide otherwise today, and the run must continue as if never stopped."""
        saved = self.out / "policy.json"
        if self.resume and t.precision == "auto" and saved.is_file():
            try:
                policy = precision_mod.Policy(**{**json.loads(saved.read_text()), "reason": "as the run chose "
                                                 f"({saved})"})
            except (ValueError, TypeError) as exc:
                raise GenfwError(f"{saved}: unreadable precision policy ({exc}); delete it to choose again") from None
        else:
            policy = precision_mod.resolve(t.precision, self.device, t.channels_last)
        if self.dist.enabled and t.precision == "auto":  # every rank trains under rank 0's choice
            chosen = [policy]
            torch.distributed.broadcast_object_list(chosen, src=0)
            policy = chosen[0]
        return policy

    def _run(self, cfg: RunConfig, t) -> dict:
        d = self.dist
        self.device = resolve_device(cfg.device, d.local_rank)
        self.out = Path(cfg.out or f"runs/{cfg.plugin or 'run'}-{cfg.preset or 'custom'}").expanduser()
        self.policy = self._policy(t)
        _check_out_dir(self.out)
        self._lock_out()
        self.ckpt_root = self.out / "checkpoints"
        existing = ddp.from_main(bool(ckpt_mod.complete_checkpoints(self.ckpt_root)))
        if existing and not self.resume:
            raise GenfwError(f"{self.out} already holds checkpoints; pass --resume to continue it or "
                             "choose another --out")
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

        seed_everything(cfg.seed)
        dataset = _build_dataset(cfg, self.registry)
        facts = _dataset_facts(dataset)
        self.mask_fn = self.registry.build(cfg.mask, kind="mask", path="mask") if cfg.mask else None
        self.mask_rng = torch.Generator().manual_seed(cfg.seed * 2 + 1 + 7919 * d.rank)
        self.mask_seed = cfg.seed * 2 + 1
        self.context = {**facts, "has_mask": bool(cfg.mask), "total_steps": t.steps,
                        "batch_size": t.batch_size, "allow_random_weights": _allow_random_weights(cfg),
                        "out_dir": str(self.out)}
        algo = self.registry.build(cfg.algorithm, kind="algorithm", path="algorithm")
        algo.setup(Context(registry=self.registry, device=self.device, **self.context))
        self.algo = algo
        if d.is_main:
            print(f"precision policy: {self.policy.describe()}", file=sys.stderr)
        if self.policy.channels_last:
            for net in algo.nets.values():
                net.to(memory_format=torch.channels_last)
        for net in algo.nets.values():
            net.train()
        if t.sync_batchnorm:
            self._use_sync_batchnorm(algo)
        if d.enabled:
            for net in algo.nets.values():
                ddp.broadcast_module(net)
            # replicas start equal; their random streams (latents, masks) must not
            seed_everything(cfg.seed + 7919 * d.rank)
        self.scaler = torch.amp.GradScaler("cuda") if self.policy.precision == "fp16" else None

        if self.resume:
            if existing:
                self._restore(self.ckpt_root)
            elif d.is_main:
                print(f"no checkpoint in {self.ckpt_root}; starting from step 0", file=sys.stderr)
        if d.is_main:
            replace_file(self.out / "config.toml", dump_toml(self.resolved))
            replace_file(self.out / "policy.json", json.dumps(self.policy.as_dict()) + "\n")
            record_licences(self.out, self.resolved, self.registry)
            self._trim_log()

        self.order = ddp.GlobalOrder(len(dataset), t.batch_size, cfg.seed, d.rank, d.world_size)
        loader_gen = torch.Generator().manual_seed(cfg.seed * 31 + self.position + 7919 * d.rank)
        sampler = ddp.StreamSampler(self.order, self.stream, with_epoch=hasattr(dataset, "set_epoch"))
        loader = DataLoader(dataset, batch_sampler=sampler,
                            num_workers=t.num_workers, generator=loader_gen,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        return self._loop(iter(loader))

    # ---------------------------------------------------------------------------------------------
    def _lock_out(self) -> None:
        """One writer per --out (rank 0 writes for all ranks): a second run, or a second --resume,
        fails here with the holder named instead of interleaving logs and pruning the other's files."""
        if self.dist.is_main:
            self._lock = RunLock.acquire(self.out)

    def _unlock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None

    def _report(self, msg: str) -> None:
        print(msg, file=sys.stderr)

    def _check_same_run(self, path: Path) -> None:
        """Resuming with another plugin / algorithm would fail deep in weight loading: say so first."""
        saved = ckpt_mod.read_state(path).get("config", {})
        mine = str(self.cfg.algorithm.get("type", ""))
        theirs = str((saved.get("algorithm") or {}).get("type", ""))
        if theirs and mine != theirs:
            who = f"plugin {saved.get('plugin')!r}" + (f", preset {saved.get('preset')!r}" if saved.get("preset") else "") \
                if saved.get("plugin") else f"algorithm {theirs!r}"
            raise GenfwError(f"{self.out} was trained by {who} ({theirs}), not {mine}; resume it with its own "
                             f"config: {resume_command(self.out)} (uses {self.out / 'config.toml'})")

    def _restore(self, root: Path) -> None:
        d = self.dist
        # the newest checkpoint that verifies; damaged ones are reported, set aside and skipped.
        # Rank 0 chooses and the others load its choice, so every rank resumes the same checkpoint
        # (and fails with the same one-line error when none is usable).
        choice: Path | GenfwError | None = None
        if d.is_main:
            try:
                for cand in ckpt_mod.resume_candidates(root, warn=False):
                    try:
                        self._check_same_run(cand)  # on the newest checkpoint whose state.json reads
                        break
                    except ckpt_mod.DamagedCheckpointError:
                        continue  # load_for_resume reports it
                path, state = ckpt_mod.load_for_resume(root, self.algo, scaler=self.scaler,
                                                       generators={"mask": self.mask_rng}, report=self._report)
                choice = path
            except GenfwError as exc:
                choice = exc
        choice = ddp.from_main(choice)
        if isinstance(choice, GenfwError):
            raise choice
        if not d.is_main:
            path = Path(choice)
            try:
                state = ckpt_mod.load_checkpoint(path, self.algo, scaler=self.scaler,
                                                 generators={"mask": self.mask_rng})
            except GenfwError as exc:
                raise GenfwError(f"rank {d.rank} cannot load {path}, the checkpoint rank 0 chose ({exc}); "
                                 "--out must be on a filesystem every node sees") from None
        self.step = int(state["step"])
        self.images = int(state["images"])
        self.position = int(state["data_position"])
        self.elapsed = float(state.get("elapsed", 0.0))
        saved_world = int(state.get("world_size", 1))
        # checkpoints from before the shared stream counted batches of one process
        self.stream = int(state.get("data_stream_position", self.position * self.cfg.train.batch_size))
        self._restore_rank(path, saved_world, state)
        if self.dist.is_main:
            note = "" if saved_world == self.dist.world_size else \
                f" written by {saved_world} process(es), continued on {self.dist.world_size}"
            print(f"resumed from {path} (step {self.step}){note}", file=sys.stderr)

    def _restore_rank(self, path: Path, saved_world: int, state: dict) -> None:
        """This rank's own streams and algorithm state (load_checkpoint restored rank 0's).

        Same world size: every rank gets exactly what it saved (bit-exact resume). Another world
        size: every rank's random streams are derived from (seed, rank, step), and its per-rank
        algorithm state is that of saved rank (rank mod saved world size).
        """
        d = self.dist
        if saved_world == d.world_size:
            if d.rank == 0:
                return
            entry = ckpt_mod.read_rank_state(path, d.rank, state)
            if entry is not None:
                ckpt_mod.set_rng_state(entry["rng"], {"mask": self.mask_rng})
                self.algo.load_extra(entry.get("algorithm", {}), entry["tensors"])
                return
        seed = ddp.derived_seed(self.cfg.seed, d.rank, self.step)
        seed_everything(seed)
        self.mask_rng.manual_seed(seed * 2 + 1)
        src = d.rank % saved_world
        entry = ckpt_mod.read_rank_state(path, src, state) if src else None
        if entry is not None:
            self.algo.load_extra(entry.get("algorithm", {}), entry["tensors"])

    def _rank_state(self) -> dict:
        return {"rank": self.dist.rank, "rng": ckpt_mod.rng_state({"mask": self.mask_rng}),
                "data_position": self.position, "algorithm": dict(self.algo.extra_state()),
                "tensors": {k: v.detach().cpu() for k, v in self.algo.extra_tensors().items()}}

    def _use_sync_batchnorm(self, algo) -> None:
        total = 0
        for name, net in list(algo.nets.items()):
            new, k = ddp.convert_sync_batchnorm(net)
            if new is not net:
                algo.nets[name] = new
            total += k
        if self.dist.is_main and total == 0:
            print("train.sync_batchnorm: no network has BatchNorm layers; nothing to synchronise",
                  file=sys.stderr)
        elif self.dist.is_main and not self.dist.enabled:
            print("train.sync_batchnorm: one process, so BatchNorm already sees the whole batch",
                  file=sys.stderr)

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (the killed run logged steps it never checkpointed)."""
        log = self.out / "log.jsonl"
        if not log.is_file():
            return
        import json

        keep = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a half-written last line from a SIGKILL
        replace_file(log, "".join(f"{ln}\n" for ln in keep))  # a kill mid-trim keeps the old log

    def _batch(self, raw: dict) -> dict:
        nonblock = self.device.type == "cuda"
        cl = self.policy.channels_last
        batch = {}
        for k, v in raw.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=nonblock)
                if cl and v.ndim == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            batch[k] = v
        if self.mask_fn is not None:
            from genfw.core.masks import draw

            img = batch["image"]
            n = img.shape[0]
            # mask k of the run is a function of (seed, k): bins stay balanced at any batch size.
            # k counts along the data stream (this rank's block of the step), so masks also carry
            # on without repeats when a run resumes on another number of processes
            start = self.stream + self.dist.rank * n
            m = draw(self.mask_fn, n, img.shape[-2], img.shape[-1], seed=self.mask_seed, start=start)
            m = m.to(self.device, dtype=img.dtype)
            batch["mask"] = m.contiguous(memory_format=torch.channels_last) if cl else m
        return batch

    def _guard_finite(self) -> None:
        """Never checkpoint a diverged state: weights, buffers, optimizer and algorithm tensors are
        checked finite first; the error names the network and tensor and the last good checkpoint."""
        try:
            ckpt_mod.check_finite_state(self.algo, self.scaler, step=self.step)
        except ckpt_mod.NonFiniteStateError as exc:
            raise ckpt_mod.NonFiniteStateError(f"{exc}; {self._last_good_text()}") from None

    def _last_good_text(self) -> str:
        good = ckpt_mod.last_good(self.ckpt_root)
        return f"last good checkpoint: {good}" if good else "no checkpoint was written"

    def save(self, tag: str = "") -> Path | None:
        """Every rank calls this together; rank 0 writes (other ranks return None)."""
        d = self.dist
        self._guard_finite()  # on every rank: each checks its own per-rank algorithm tensors too
        ranks = ddp.gather_to_main(self._rank_state()) if d.enabled else None
        if not d.is_main:
            return None
        path = ckpt_mod.save_checkpoint(
            self.ckpt_root, self.algo, step=self.step, images=self.images, data_position=self.position,
            config=self.resolved, context=self.context, scaler=self.scaler,
            generators={"mask": self.mask_rng}, keep_last=self.cfg.train.keep_last,
            extra={"elapsed": self.elapsed + time.time() - self._seg_start, "reason": tag,
                   "world_size": d.world_size, "data_stream_position": self.stream},
            rank_states=ranks,
        )
        self.last_checkpoint = path
        return path

    def _samples(self, batch: dict) -> None:
        algo, n = self.algo, self.cfg.train.sample_count
        modes = {name: net.training for name, net in algo.nets.items()}
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.cfg.seed)  # same latents every grid: progress is visible
                for net in algo.nets.values():
                    net.eval()
                small = {k: (v[:n] if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
                grids = algo.visualize(small, n) or {}
            for name, images in grids.items():
                save_grid(images.float(), self.out / "samples" / f"{name}_{self.step:08d}.png")
        finally:
            for name, net in algo.nets.items():
                net.train(modes[name])

    def _open_tensorboard(self):
        if not (self.cfg.train.tensorboard and self.dist.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("train.tensorboard is on but tensorboard is not installed; logging to "
                          "log.jsonl only (pip install tensorboard)", stacklevel=2)
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    # ---------------------------------------------------------------------------------------------
    def _loop(self, batches: Iterator[dict]) -> dict:
        import json

        from tqdm import tqdm

        t, d, algo = self.cfg.train, self.dist, self.algo
        grad_sync = ddp.average_gradients if d.enabled else None
        main = d.is_main
        self.last_checkpoint = None
        if self.step >= t.steps:
            return self._summary({}, 0.0, 0)
        tb = self._open_tensorboard()
        log_f = open(self.out / "log.jsonl", "a") if main else None
        bar = tqdm(total=t.steps, initial=self.step, disable=not (self.progress and main),
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        acc: dict[str, float] = {}
        acc_n = 0
        last_logs: dict[str, float] = {}
        seg_start = self._seg_start = time.time()
        seg_images = 0
        last_ckpt_time = time.time()
        try:
            with _StopFlag() as stop:
                while self.step < t.steps:
                    batch = self._batch(next(batches))
                    self.position += 1
                    try:
                        logs = run_step(algo, batch, self.step, precision=self.policy.precision, scaler=self.scaler,
                                        grad_clip=t.grad_clip, grad_sync=grad_sync)
                    except NonFiniteLossError as exc:
                        raise NonFiniteLossError(f"{exc}; {self._last_good_text()}") from None
                    if d.enabled:
                        ddp.after_step(algo.nets.values())
                    self.stream += self.order.span
                    n_img = int(batch["image"].shape[0]) * d.world_size
                    self.step += 1
                    self.images += n_img
                    seg_images += n_img
                    for k, v in logs.items():
                        acc[k] = acc.get(k, 0.0) + v
                    acc_n += 1
                    bar.update(1)

                    if self.step % t.log_every == 0 or self.step == t.steps:
                        mean = {k: v / acc_n for k, v in acc.items()}
                        if d.enabled:
                            mean = ddp.mean_over_ranks(mean)
                        acc, acc_n = {}, 0
                        now = time.time()
                        rate = seg_images / max(now - seg_start, 1e-9)
                        last_logs = mean
                        if main:
                            rec = {"step": self.step, "images": self.images,
                                   "time": round(self.elapsed + now - seg_start, 3),
                                   "images_per_s": round(rate, 2), **mean}
                            log_f.write(json.dumps(rec) + "\n")
                            log_f.flush()
                            if tb is not None:
                                for k, v in mean.items():
                                    tb.add_scalar(k, v, self.step)
                            shown = {k: f"{v:.3g}" for k, v in list(mean.items())[:6]}
                            bar.set_postfix({**shown, "img/s": f"{rate:.1f}"}, refresh=False)

                    if main and t.sample_every and (self.step % t.sample_every == 0 or self.step == t.steps):
                        self._samples(batch)  # the final step always leaves a grid of the final weights

                    stop_now = stop.requested
                    due = (t.checkpoint_every and self.step % t.checkpoint_every == 0) or self.step == t.steps
                    if t.checkpoint_minutes and time.time() - last_ckpt_time >= 60 * t.checkpoint_minutes:
                        due = True
                    # ranks decide together: saving gathers every rank's state
                    stop_now, due = ddp.max_over_ranks(int(stop_now), int(due))
                    if due or stop_now:
                        self.save("interrupt" if stop_now else "")
                        last_ckpt_time = time.time()
                    if stop_now:
                        bar.close()
                        name = signal.Signals(stop_now).name
                        msg = (f"{name}: stopped at step {self.step} of {t.steps}; checkpoint "
                               f"{self.last_checkpoint}\nresume with: {resume_command(self.out)}")
                        if main:
                            print(msg, file=sys.stderr)
                        raise TrainingInterrupted(stop_now, self.last_checkpoint, msg)
        finally:
            bar.close()
            if log_f is not None:
                log_f.close()
            if tb is not None:
                tb.close()
        ddp.barrier()
        duration = time.time() - seg_start
        summary = self._summary(last_logs, duration, seg_images)
        if main:
            losses = ", ".join(f"{k}={v:.4g}" for k, v in last_logs.items())
            print(f"done: {self.step} steps, {self.images} images, {duration:.1f} s "
                  f"({summary['images_per_s']:.1f} img/s); {losses}; out: {self.out}")
        return summary

    def _summary(self, logs: dict, duration: float, images: int) -> dict:
        return {"steps": self.step, "images": self.images, "seconds": round(duration, 3),
                "images_per_s": images / duration if duration > 0 else 0.0, "out": str(self.out),
                "checkpoint": str(self.last_checkpoint or ""), "losses": dict(logs)}


def resume_command(out: Path) -> str:
    import shlex

    return f"genfw run --resume --out {shlex.quote(str(out))}"


def train(cfg: RunConfig, resolved: dict, registry, resume: bool = False, progress: bool = True) -> dict:
    """Run `cfg` (resolved mapping saved alongside) to cfg.train.steps; returns a summary dict."""
    return Trainer(cfg, resolved, registry, resume=resume, progress=progress).run()
