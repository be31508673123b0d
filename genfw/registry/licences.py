"""Which licences a run depends on: every component named in its config and every weight asset it
resolved. Written to OUT/licences.json so a run's outputs can be checked before commercial use."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from genfw.registry.registry import Registry


def _types(node: Any) -> Iterable[str]:
    if isinstance(node, Mapping):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for v in node.values():
            yield from _types(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _types(v)


def licences_used(resolved: Mapping[str, Any], registry: Registry, assets: Iterable[str] = ()) -> dict:
    """{"components": {name: licence}, "assets": {name: licence}} for a resolved run config."""
    from genfw.core.weights import ASSETS

    components = {}
    for name in _types(resolved):
        try:
            entry = registry.get(name)
        except Exception:  # noqa: BLE001 - a value that merely looks like a spec
            continue
        components[entry.name] = entry.licence or "not stated"
    used = {a: ASSETS[a].licence or "not stated" for a in sorted(set(assets)) if a in ASSETS}
    return {"components": dict(sorted(components.items())), "assets": used}


def record_licences(out: str | Path, resolved: Mapping[str, Any], registry: Registry) -> dict:
    """Write OUT/licences.json (temp file + rename: never half-written); returns what it wrote."""
    from genfw.core.weights import USED

    data = licences_used(resolved, registry, USED)
    path = Path(out) / "licences.json"
    tmp = path.with_name(".licences.json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return data
