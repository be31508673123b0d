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


def write_mask_set(options: tuple[str, ...], size, count: int, out: str) -> None:
    """`size`: a side, or `genfw masks`' S|WxH text (sets are square: WxH must have W == H)."""
    from genfw.core.eval.mask_sets import get_spec, GeneratedMaskSet, write_set

    name = options[0]
    get_spec(name)
    if isinstance(size, str):
        from genfw.cli.data_cmd import parse_size

        width, height = parse_size(size)
        if width != height:
            raise GenfwError(f"mask set {name} is square: give --size S, not {size}")
        size = width
    if out.lower().endswith(".png"):
        raise GenfwError(f"--set {name} writes a folder of masks; give -o a folder, not {out}")
    meta = write_set(GeneratedMaskSet(name, size, count), out)
    r = meta["hole_ratio"]
    click.echo(f"wrote mask set {name} ({size} px, {count} masks) to {out}: sha256 {meta['sha256']} "
               f"(hole ratio min {min(r):.3f}, mean {sum(r) / len(r):.3f}, max {max(r):.3f})")


# --- genfw eval --report ------------------------------------------------------------------------
INPAINT_DEFAULT = "inpaint,lpips,fid,kid"
GENERATION_DEFAULT = "fid,kid,msssim"
RESIZE_MODE = "centre crop to square, then area (shrink) / bicubic (enlarge) resize to the model's size"


def report_options(f):
    """The options `genfw eval` gains for results folders (one decorator, so eval_cmd stays small)."""
    opts = [
        click.option("--report", "report", default=None, metavar="DIR",
                     help="Write a results folder (scores.json, scores.md, per-bin plot, image grids)."),
        click.option("--task", "task", type=click.Choice(["inpaint", "generation"]), default=None,
                     help="With --report: what to score (default: inpaint if the model can, else generation)."),
        click.option("--mask-set", "mask_set", default=None, metavar="NAME|DIR",
                     help="With --report: a named mask set (thin, medium, thick, irregular, pconv, center, rect) "
                          "or a folder of mask images (white = hole). Default: irregular."),
        click.option("--mask-invert", "mask_invert", is_flag=True, help="The --mask-set folder stores black = hole."),
        click.option("--table", "table", default=None, metavar="PRESET",
                     help="With --report: a paper table (csa-table2, csa-table1, foam-table1, introvae-table2, lis-is)."),
        click.option("--fid-on", "fid_on", type=click.Choice(["composited", "raw"]), default="composited",
                     show_default=True, help="Inpainting FID/KID on composited completions or the raw output."),
        click.option("--keep-completions", is_flag=True, help="Keep the completion PNGs in DIR/completions."),
        click.option("--pairs", "pairs", default=1000, show_default=True, type=click.IntRange(1),
                     help="MS-SSIM pairs (IntroVAE: 10000)."),
        click.option("--vgg-weights", default="", metavar="PATH", help="VGG-16 for LPIPS (asset vgg16-imagenet)."),
        click.option("--lpips-weights", default="", metavar="PATH", help="LPIPS heads (asset lpips-vgg)."),
        click.option("--progress/--no-progress", "progress", default=True, help="Progress bars on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _metric_list(metrics: str, task: str) -> list[str]:
    from genfw.core.eval.generation_eval import METRICS as GEN
    from genfw.core.eval.inpaint_eval import METRICS as INP, PIXEL_METRICS

    names = []
    for m in (x.strip() for x in metrics.split(",")):
        if not m:
            continue
        names += list(PIXEL_METRICS) if (m == "inpaint" and task == "inpaint") else [m]
    allowed = INP if task == "inpaint" else GEN
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        hint = "inpaint (= l1,l2,psnr,ssim), " + ", ".join(INP) if task == "inpaint" else ", ".join(GEN)
        raise GenfwError(f"--metrics {', '.join(bad) or metrics!r} not available for --task {task}; choose from {hint}")
    if task == "inpaint":
        names = list(dict.fromkeys([*PIXEL_METRICS, *names]))  # pixel scores cost nothing: always there
    return list(dict.fromkeys(names))


def eval_dataset(registry, cfg, data_path: str | None, size: int, channels: int):
    """(dataset, the spec it was built from), as plain `genfw eval` picks it: --data (a folder, a
    CelebA / CelebA-HQ root, a table) or the run's data, its held-out split where it has one, no flips."""
    import attrs

    if data_path:
        from genfw.core.data.detect import data_spec

        spec, _ = data_spec(data_path, None, registry)  # a folder, a CelebA / CelebA-HQ root, a table
        explicit_split = "split" in spec
    else:
        spec, explicit_split = dict(cfg.data), False
    entry = registry.get(str(spec.get("type", "")), kind="dataset")
    if not explicit_split and entry.config is not None and "split" in attrs.fields_dict(entry.config):
        spec["split"] = "test"  # score held-out images when the dataset has splits
    spec["flip"] = False
    spec.update({"image_size": size, "channels": channels})
    return registry.build(spec, kind="dataset", path="data"), spec


def _check_weights(wanted: list[str], weights: str, vgg: str, lpips: str) -> None:
    """Missing weights fail here, in one line, before any image is generated."""
    from genfw.core import weights as W

    if any(m in wanted for m in ("fid", "kid", "isc", "prc", "ids")):
        from genfw.core.fidelity import resolve_weights

        resolve_weights(weights)
    if "lpips" in wanted:
        for name, path, flag in (("vgg16-imagenet", vgg, "--vgg-weights"), ("lpips-vgg", lpips, "--lpips-weights")):
            try:
                W.resolve(name, path)
            except GenfwError as exc:
                raise type(exc)(f"LPIPS: {exc}; or pass {flag} PATH, or drop lpips from --metrics") from None


def run_report(*, run: str, metrics: str, metrics_defaulted: bool, data_path: str | None, masks: str | None,
               count: int, batch_size: int, seed: int, weights: str, device: str, report: str | None,
               task: str | None, mask_set: str | None, mask_invert: bool, table: str | None, fid_on: str,
               keep_completions: bool, pairs: int, vgg_weights: str, lpips_weights: str, progress: bool,
               as_json: bool = False, landmarks_backend: str | None = None, detector_weights: str = "",
               outputs_dir: str | None = None) -> None:
    from pathlib import Path

    from genfw.core.checkpoint import load_run
    from genfw.core.eval.presets import get_preset
    from genfw.registry import get_registry

    if not report:
        given = [n for n, v in (("--task", task), ("--mask-set", mask_set), ("--table", table)) if v]
        raise GenfwError(f"{', '.join(given)} need --report DIR (the results folder to write)")
    if masks:
        raise GenfwError("--masks draws fresh masks; with --report use --mask-set NAME|DIR (fixed, hashed masks)")
    if outputs_dir:
        raise GenfwError("--outputs is for plain --metrics inpaint; with --report use --keep-completions "
                         "(the completions go to DIR/completions)")
    preset = get_preset(table) if table else None
    if preset and task and task != preset.task:
        raise GenfwError(f"--table {table} is a {preset.task} table, not --task {task}")
    if preset and not metrics_defaulted:
        raise GenfwError(f"--table {table} fixes its metrics ({', '.join(preset.metrics)}); drop --metrics")
    out_dir = Path(report).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise GenfwError(f"--report {out_dir} exists and is not a folder")
    algo, cfg = load_run(run, device=device)
    caps = algo.capabilities()
    task = task or (preset.task if preset else ("inpaint" if "inpaint" in caps else "generation"))
    need = "inpaint" if task == "inpaint" else "sample"
    if need not in caps:
        raise GenfwError(f"{type(algo).__name__} cannot {need}, so --task {task} does not apply")
    if preset:
        wanted = list(preset.metrics)  # in the paper's column order
    else:
        wanted = _metric_list(metrics if not metrics_defaulted else
                              (INPAINT_DEFAULT if task == "inpaint" else GENERATION_DEFAULT), task)
    if task == "inpaint" and mask_set and not Path(mask_set).expanduser().is_dir():
        from genfw.core.eval.mask_sets import get_spec

        get_spec(mask_set)  # a mistyped set name fails before anything else
    _check_weights(wanted, weights, vgg_weights, lpips_weights)
    registry = get_registry()
    size = int(algo.ctx.image_size)
    dataset, data_spec = eval_dataset(registry, cfg, data_path, size, algo.ctx.channels)
    train_data = None
    if task == "generation":  # neighbours come from the training images when those are not the evaluated ones
        train_spec = {**dict(cfg.data), "flip": False, "image_size": size, "channels": algo.ctx.channels}
        if train_spec != data_spec:
            train_data = registry.build(train_spec, kind="dataset", path="data")
    dev = "cuda" if str(algo.ctx.device).startswith("cuda") else "cpu"
    import torch

    from genfw import __version__

    try:
        import torch_fidelity

        tf_version = torch_fidelity.__version__
    except ImportError:  # only the FID family needs it
        tf_version = ""
    prov = {"genfw": __version__, "torch": torch.__version__, "torch_fidelity": tf_version, "checkpoint": getattr(algo, "checkpoint_dir", ""),
            "checkpoint_step": getattr(algo, "checkpoint_step", 0), "algorithm": cfg.algorithm.get("type", ""),
            "data": data_spec, "resolution": size, "channels": algo.ctx.channels, "resize": RESIZE_MODE,
            "seed": seed, "batch_size": f"{batch_size} (no score depends on it)", "device": str(algo.ctx.device),
            "table": table or ""}
    warnings = []
    if preset:
        if size != preset.size:
            warnings.append(f"evaluated at {size} px; the paper's table is at {preset.size} px: not comparable")
        warnings.append(f"the paper evaluated on {preset.data}"
                        + (f" with {preset.count} images" if preset.count else "") + "; compare only like with like")
        if preset.notes:
            warnings.append(preset.notes)
    if task == "inpaint":
        _inpaint_report(algo, dataset, out_dir, wanted, preset, prov, warnings, count=count, batch_size=batch_size,
                        seed=seed, weights=weights, device=dev, mask_set=mask_set, mask_invert=mask_invert,
                        fid_on=fid_on, keep=keep_completions, vgg=vgg_weights, lpips=lpips_weights, progress=progress,
                        as_json=as_json, landmarks_backend=landmarks_backend, detector_weights=detector_weights)
    else:
        _generation_report(algo, dataset, train_data, out_dir, wanted, preset, prov, warnings, count=count,
                           batch_size=batch_size,
                           seed=seed, weights=weights, device=dev, pairs=pairs, progress=progress, as_json=as_json)


def _inpaint_report(algo, dataset, out_dir, wanted, preset, prov, warnings, *, count, batch_size, seed, weights,
                    device, mask_set, mask_invert, fid_on, keep, vgg, lpips, progress, as_json, landmarks_backend,
                    detector_weights) -> None:
    from genfw.core.eval import results
    from genfw.core.eval.inpaint_eval import InpaintEvalOptions, cleanup, evaluate_inpainting
    from genfw.core.eval.mask_sets import bin_label, open_set

    size = int(algo.ctx.image_size)
    n = min(count, len(dataset))
    ms = open_set(mask_set or (preset.mask_set if preset else "irregular"), size, n, invert=mask_invert)
    opts = InpaintEvalOptions(count=n, batch_size=batch_size, metrics=wanted, fid_on=fid_on, weights=weights,
                              vgg_weights=vgg, lpips_weights=lpips, seed=seed, device=device, progress=progress,
                              keep_completions=keep)
    from genfw.cli.eval_cmd import Conditions

    conditions = Conditions(algo, dataset, landmarks_backend, detector_weights, str(algo.ctx.device))
    out_dir.mkdir(parents=True, exist_ok=True)
    res = evaluate_inpainting(algo, dataset, ms, opts, out_dir, conditions)
    try:
        if n > ms.count:
            warnings.append(f"{n} images but {ms.count} masks in {ms.name}: image i gets mask i mod {ms.count}")
        scored = len(res["per_image"]["index"])
        if scored < n:
            warnings.append(f"{n - scored} of {n} images left out (no face found by the landmark detector)")
        cond = conditions.provenance()
        if cond:
            prov["conditions"] = cond
        prov.update({"task": "inpaint", "images": scored, "mask_set": ms.provenance(), "scored_on": "composited",
                     "fid_on": fid_on, **res["provenance_extra"]})
        if "lpips_provenance" in res:
            prov["lpips"] = res["lpips_provenance"]
        if "fidelity_provenance" in res:
            prov["fidelity"] = res["fidelity_provenance"]
        columns = [bin_label(*b) for b in ms.bins] + ["overall"]
        ours = {**res["bins"], "overall": res["overall"]}
        per_bin = preset.per_bin if preset else True
        rows = [(f"ours ({ms.name}, {n} images)", ours)] + (list(preset.paper) if preset else [])
        shown = [m for m in wanted if m not in ("kid", "ids")] + (["kid"] if "kid" in wanted else []) \
            + (["pids", "uids"] if "ids" in wanted else [])
        table_md = results.markdown_table(columns if per_bin else ["overall"], shown, rows, per_bin)
        scores = {"task": "inpaint", "table": preset.name if preset else "", "metrics": wanted,
                  "overall": res["overall"], "bins": res["bins"],
                  "paper": [{"source": label, "scores": s} for label, s in (preset.paper if preset else [])],
                  "provenance": prov}
        pics = results.inpaint_pictures(out_dir, res, ms, wanted)
        title = preset.title if preset else f"Inpainting, mask set {ms.name}"
        written = results.write(out_dir, scores, table_md, title, warnings, pics)
    finally:
        cleanup(res)
    _print(out_dir, title, warnings, table_md, written, as_json, f"mask set {ms.name} sha256 {ms.sha256()}")


def _generation_report(algo, dataset, train_data, out_dir, wanted, preset, prov, warnings, *, count, batch_size, seed,
                       weights, device, pairs, progress, as_json) -> None:
    from genfw.core.eval import results
    from genfw.core.eval.generation_eval import GenerationEvalOptions, evaluate_generation

    sweeps = [({}, f"ours ({count} samples)")]
    if preset and preset.sweep_lis_steps:
        k = algo.lis_k() if hasattr(algo, "lis_k") else 0
        if k == 0:
            raise GenfwError(f"--table {preset.name} needs a generator with LIS modules (this run has none)")
        sweeps = [({"lis_steps": s}, f"ours, {s} of {k} ({count} samples)") for s in range(k + 1)]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, runs = [], []
    last = None
    for options, label in sweeps:
        opts = GenerationEvalOptions(count=count, batch_size=batch_size, metrics=wanted, weights=weights, seed=seed,
                                     device=device, progress=progress, pairs=pairs, sample_options=options)
        last = evaluate_generation(algo, dataset, opts, out_dir, train_data)
        rows.append((label, {"overall": last["overall"]}))
        runs.append({"label": label, "sample_options": options, "overall": last["overall"]})
    real = {m: last["overall"][f"{m}_real"] for m in ("msssim", "isc") if f"{m}_real" in last["overall"]}
    if real:
        rows.append((f"real images ({min(count, len(dataset))})", {"overall": real}))
    prov.update({"task": "generation", **last["provenance_extra"]})
    prov.pop("sample_options", None)
    if "fidelity_provenance" in last:
        prov["fidelity"] = last["fidelity_provenance"]
    table_md = results.markdown_table(["overall"], wanted, rows + (list(preset.paper) if preset else []), False)
    scores = {"task": "generation", "table": preset.name if preset else "", "metrics": wanted,
              "overall": runs[0]["overall"], "rows": runs,
              "paper": [{"source": label, "scores": s} for label, s in (preset.paper if preset else [])],
              "provenance": prov}
    pics = results.generation_pictures(out_dir, last)
    title = preset.title if preset else "Generation"
    written = results.write(out_dir, scores, table_md, title, warnings, pics)
    _print(out_dir, title, warnings, table_md, written, as_json)


def _print(out_dir, title, warnings, table_md, written, as_json, extra: str = "") -> None:
    if as_json:  # the file just written, so the printed JSON is exactly what scores.json holds
        click.echo((out_dir / "scores.json").read_text())
        return
    click.echo(f"{title}\n")
    for w in warnings:
        click.echo(f"note: {w}")
    click.echo(table_md)
    click.echo(("\n" + extra if extra else "") + f"\nwrote {', '.join(str(p) for p in written)}")
