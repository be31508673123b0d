"""What a component accepts: options with types, defaults, constraints and help, and TOML views.

Help comes from `field(metadata={"help": ...})` or else from the trailing comment on the field's
line in the config class (`width: int = 64  # feature channels`), the convention genfw uses.
"""
from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, Mapping

import attrs
import tomli_w

from genfw.registry.registry import Entry, Registry


@attrs.define
class Option:
    name: str
    type: str
    default: Any
    help: str = ""
    constraint: str = ""


def _comments(cls: type) -> dict[str, str]:
    """Field name -> trailing comment of its definition in the class source."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    by_line: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                by_line[tok.start[0]] = tok.string.lstrip("#").strip()
        tree = ast.parse(src)
    except (tokenize.TokenError, SyntaxError):
        return {}
    out: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    lines = src.splitlines()
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                if line in by_line:
                    out[node.target.id] = by_line[line]
                    break
            else:  # a comment block on the lines just above the field
                above, line = [], node.lineno - 1
                while line in by_line and lines[line - 1].lstrip().startswith("#"):
                    above.insert(0, by_line[line])
                    line -= 1
                if above:
                    out[node.target.id] = " ".join(above)
    return out


def type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    origin = typing.get_origin(t)
    if origin is None:
        return getattr(t, "__name__", str(t))
    args = ", ".join(type_name(a) for a in typing.get_args(t) if a is not Ellipsis)
    name = getattr(origin, "__name__", str(origin))
    return f"{name}[{args}]" if args else name


def describe_validator(val: Any) -> str:
    """A readable constraint for attrs' built-in validators ('' when unknown)."""
    if val is None:
        return ""
    if hasattr(val, "_validators"):  # and_()
        return ", ".join(d for d in (describe_validator(x) for x in val._validators) if d)
    if hasattr(val, "compare_op") and hasattr(val, "bound"):
        return f"{val.compare_op} {val.bound}"
    if hasattr(val, "options"):
        opts = val.options
        return "one of " + ", ".join(str(o) for o in opts) if isinstance(opts, (list, tuple, set, frozenset)) else ""
    if hasattr(val, "member_validator"):
        inner = describe_validator(val.member_validator)
        return f"each {inner}" if inner else ""
    if hasattr(val, "min_length"):
        return f"at least {val.min_length} items"
    if hasattr(val, "max_length"):
        return f"at most {val.max_length} items"
    if hasattr(val, "validator"):  # optional()
        return describe_validator(val.validator)
    doc = (getattr(val, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if callable(val) and inspect.isfunction(val) and doc else ""


def options(entry: Entry) -> list[Option]:
    """Every option of the component's config class, in declaration order."""
    if entry.config is None:
        return []
    attrs.resolve_types(entry.config)
    notes = _comments(entry.config)
    out = []
    for f in attrs.fields(entry.config):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory(entry.config) if default.takes_self else default.factory()
        out.append(Option(name=f.alias or f.name, type=type_name(f.type), default=default,
                          help=str(f.metadata.get("help", "")) or notes.get(f.name, ""),
                          constraint=describe_validator(f.validator)))
    return out


def defaults(entry: Entry) -> dict:
    from genfw.core.config import unstructure

    cfg = entry.default_config()
    return unstructure(cfg) if cfg is not None else {}


def roles(entry: Entry) -> tuple[str, ...]:
    """The roles a component provides (genfw.core.roles)."""
    from genfw.core.roles import roles_of

    return roles_of(entry)


_TABLE = {"algorithm": "algorithm", "dataset": "data", "mask": "mask"}


def example_slot(entry: Entry, registry: Registry | None) -> str:
    """A config path of a declared slot that takes one of the entry's roles ('' when none does)."""
    from genfw.core.roles import slots_of

    if registry is None:
        return ""
    mine = set(roles(entry))
    owners = registry.entries()
    for algo in (e for e in owners if e.kind == "algorithm"):
        for s in slots_of(algo):
            if s.role in mine:
                return f"algorithm.{s.key}"
    for net in (e for e in owners if e.kind != "algorithm"):  # a slot of a network inside an algorithm
        for s in slots_of(net):
            if s.role in mine:
                algos = [e for e in owners if e.kind == "algorithm"]
                # prefer the algorithm slot whose default is this very network
                for strict in (True, False):
                    for algo in algos:
                        spec_defaults = defaults(algo)
                        for a in slots_of(algo):
                            is_default = (spec_defaults.get(a.key) or {}).get("type") == net.name
                            if (is_default if strict else a.role in roles(net)):
                                return f"algorithm.{a.key}.{s.key}"
    return ""


def toml_snippet(entry: Entry, registry: Registry | None = None) -> str:
    """A table to paste into a run file: the component with every default written out."""
    header = _TABLE.get(entry.kind) or example_slot(entry, registry) or f"algorithm.{entry.kind}"
    body = {"type": entry.name, **defaults(entry)}
    lines = [] if entry.kind in _TABLE else [f"# in a slot that takes a {' or '.join(roles(entry)) or entry.kind}, e.g.:"]
    lines.append(_nested(header, body))
    return "\n".join(lines)


def _nested(header: str, body: Mapping[str, Any]) -> str:
    from genfw.core.config import dump_toml

    node: dict = {}
    cur = node
    parts = header.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = dict(body)
    return dump_toml(node).strip()


# --- config show: what was written vs what is a default ------------------------------------------
def fmt_value(v: Any) -> str:
    """A TOML value on one line (inline tables for mappings)."""
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_bare(k)} = {fmt_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).strip()[4:]


def _bare(k: str) -> str:
    return tomli_w.dumps({k: 0}).strip()[:-4]


def _is_spec(v: Any, registry: Registry) -> bool:
    return isinstance(v, Mapping) and isinstance(v.get("type"), str) and v["type"] in registry


def annotated_toml(resolved: Mapping[str, Any], raw: Mapping[str, Any], registry: Registry) -> str:
    """The resolved run config as TOML, each value marked `# default` unless a source wrote it.

    Defaults of nested components are shown as comments: they are filled when the parent builds
    the component (from the data's size and channels first), so writing them out would change the
    run. Loading the output back gives the same config.
    """
    lines: list[str] = []
    _emit(lines, [], resolved, raw, registry, nested=False)
    return "\n".join(lines).strip() + "\n"


def _emit(lines: list[str], path: list[str], table: Mapping[str, Any], raw: Any, registry: Registry,
          nested: bool) -> None:
    raw = raw if isinstance(raw, Mapping) else {}
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    width = max((len(f"{_bare(k)} = {fmt_value(v)}") for k, v in scalars.items()), default=0)
    for k, v in scalars.items():
        text = f"{_bare(k)} = {fmt_value(v)}"
        lines.append(text if k in raw else f"{text:<{width}}  # default")
    if nested and "type" in table:
        entry = registry.get(table["type"])
        extra = {k: v for k, v in defaults(entry).items() if k not in table}
        for k, v in extra.items():
            lines.append(f"# {_bare(k)} = {fmt_value(v)}  # default, filled when built")
    for k, v in tables.items():
        sub = path + [k]
        header = "[" + ".".join(_bare(p) for p in sub) + "]"
        lines.append("")
        lines.append(header if k in raw else f"{header}  # default")
        _emit(lines, sub, v, raw.get(k), registry, nested=nested or (_is_spec(v, registry) and bool(path)))
