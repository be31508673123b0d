"""`--data PATH`: which dataset a path holds, and the data table a run (or an evaluation) uses for it.

A path always means the user's data, never "the preset's dataset with another root":
* a CelebA root (``img_align_celeba/`` next to the ``list_*.txt`` files) -> ``core.celeba``;
* a CelebA-HQ root (``CelebAMask-HQ-attribute-anno.txt`` or a ``CelebA-HQ-img/`` folder) ->
  ``core.celeba-hq``, with the attribute file when there is one;
* any other folder (or one image file) -> ``core.image-folder``;
* an inline TOML table (``--data '{type = "core.celeba", root = "~/celeba", split = "all"}'``) or a
  ``.toml`` file with a ``[data]`` table -> that table as written.
A ``landmarks68.txt`` in the root (rows ``name x0 y0 ... x67 y67``) is picked up as 68-point landmarks.
The preset's options that still apply to the detected type (size, channels, flips, crop, split,
attribute names) are kept; options of another type are dropped and named in the returned note.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from genfw.core.errors import GenfwError

CELEBA_FILES = ("list_attr_celeba.txt", "list_landmarks_align_celeba.txt", "list_eval_partition.txt")
CELEBA_HQ_ATTRIBUTES = "CelebAMask-HQ-attribute-anno.txt"
LANDMARKS68 = "landmarks68.txt"
COMMON = ("image_size", "channels", "flip", "crop", "limit", "seed")


def detect_kind(root: Path) -> str:
    """The dataset type a folder holds, by its files."""
    if root.is_file():
        return "core.image-folder"
    if (root / "img_align_celeba").is_dir():
        return "core.celeba"
    if (root / CELEBA_HQ_ATTRIBUTES).is_file() or (root / "CelebA-HQ-img").is_dir():
        return "core.celeba-hq"
    return "core.image-folder"


def _inline_table(text: str) -> dict:
    from genfw.core.config import parse_value

    value = parse_value(text)
    if not isinstance(value, dict):
        raise GenfwError(f"--data {text!r} is not a TOML table; write it like '{{type = \"core.celeba\", root = \"DIR\"}}'")
    return value


def _from_toml(path: Path) -> dict:
    from genfw.core.config import load_toml

    data = load_toml(path)
    table = data.get("data", data if "type" in data else None)
    if not isinstance(table, dict) or "type" not in table:
        raise GenfwError(f"--data {path}: the file has no [data] table with a type")
    return table


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise GenfwError(f"--data: no such file or directory: {root}")
    if root.is_dir():
        try:
            next(root.iterdir(), None)
        except PermissionError:
            raise GenfwError(f"--data: cannot read the folder {root} (permission denied)") from None


def data_spec(value: str, preset_data: dict | None = None, registry=None) -> tuple[dict, str]:
    """(data table, note) for `--data VALUE` over the preset's data table; the note says what changed."""
    preset_data = dict(preset_data or {})
    text = str(value).strip()
    if text.startswith("{"):
        return _inline_table(text), ""
    root = Path(text).expanduser()
    if root.suffix.lower() == ".toml" and root.is_file():
        return _from_toml(root), ""
    _check_folder(root)
    kind = detect_kind(root)
    spec: dict[str, Any] = {"type": kind, "root": str(root)}
    old_type = str(preset_data.get("type", ""))
    same = old_type in (kind, kind.removeprefix("core."))
    fields = _fields(registry, kind)
    dropped = []
    for key, val in preset_data.items():
        if key in ("type", "root"):
            continue
        if same or key in COMMON or (fields is not None and key in fields and key not in ("length", "photos", "scale")):
            spec[key] = val
        else:
            dropped.append(key)
    if kind == "core.celeba-hq" and not spec.get("attribute_file") and (root / CELEBA_HQ_ATTRIBUTES).is_file():
        spec["attribute_file"] = CELEBA_HQ_ATTRIBUTES
    if kind != "core.image-folder" or root.is_dir():
        if (root / LANDMARKS68).is_file() and not spec.get("landmarks68") and (fields is None or "landmarks68" in fields):
            spec["landmarks68"] = LANDMARKS68
    note = ""
    if old_type and not same:
        note = f"--data {value}: {_describe(kind)}, so the run uses {kind} instead of the preset's {old_type}"
        if dropped:
            note += f" (dropped its options {', '.join(sorted(dropped))})"
    if preset_data.get("attributes") and kind == "core.image-folder":
        raise GenfwError(f"--data {value} is a plain image folder, but this config asks for attributes "
                         f"{preset_data['attributes']}: point --data at a CelebA or CelebA-HQ root with an attribute file, "
                         "or add --set data.attributes=[]")
    return spec, note


def _describe(kind: str) -> str:
    return {"core.celeba": "a CelebA root", "core.celeba-hq": "a CelebA-HQ root"}.get(kind, "an image folder")


def _fields(registry, kind: str):
    if registry is None:
        return None
    import attrs

    try:
        entry = registry.get(kind, kind="dataset")
    except GenfwError:
        return None
    return set(attrs.fields_dict(entry.config)) if entry.config is not None else set()
