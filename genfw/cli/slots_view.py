"""`genfw components --slots`: every slot of every algorithm and network, its role, what fits."""
from __future__ import annotations

import json


def render_slots(registry, as_json: bool = False, width: int = 100) -> str:
    from genfw.core.roles import ROLES, slot_table

    rows = slot_table(registry)
    if as_json:
        return json.dumps({"roles": {r.name: {"kind": r.kind, "help": r.help} for r in ROLES.values()},
                           "slots": rows}, indent=2)
    lines = []
    for r in rows:
        lines.append(f"{r['owner']}.{r['slot']}  [{r['role']}]  {r['help']}")
        fits = ", ".join(r["fits"]) or "(nothing registered)"
        lines.append(f"    fits: {fits}")
        for alt in r.get("fits_with", ()):
            setting = ", ".join(f"{k} = {v!r}" for k, v in alt["set"].items())
            lines.append(f"    with {setting}: {', '.join(alt['fits'])}")
    return "\n".join(lines) if lines else "no slots"


def markdown_table(registry) -> str:
    """The compatibility table of docs/mixing.md (a test keeps the docs equal to this)."""
    from genfw.core.roles import slot_table

    out = ["| slot | role | components that fit |", "|---|---|---|"]
    for r in slot_table(registry):
        if r["owner"].split(".")[0] == "example":
            continue  # the template plugin is not part of the shipped table
        fits = ", ".join(f"`{n}`" for n in r["fits"] if not n.startswith("example."))
        for alt in r.get("fits_with", ()):
            setting = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in alt["set"].items())
            more = ", ".join(f"`{n}`" for n in alt["fits"] if not n.startswith("example."))
            fits += f"; with `{setting}`: {more}"
        out.append(f"| `{r['owner']}` · `{r['slot']}` | {r['role']} | {fits} |")
    return "\n".join(out)
