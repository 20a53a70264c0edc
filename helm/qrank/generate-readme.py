#!/usr/bin/env python3
"""Generate the chart's README.md from README.tmpl.md and the doc comments in values.yaml.

    python3 helm/qrank/generate-readme.py          # rewrite README.md
    python3 helm/qrank/generate-readme.py --check  # exit 1 (with a diff) if README.md is stale

Documentation convention (helm-docs style): a value is documented by a comment block starting
with `# --` directly above its key; following `#` lines continue it. A documented map is one
row (its default is the whole map) and its children need no docs. Every other key must be a map
whose keys are documented, or carry a doc itself: an undocumented leaf is an error, so a new
value cannot be added without saying what it does.

Python standard library only: values.yaml is read with a small line parser for the block-style
subset it uses (maps, `key: scalar`, `key: [flow]`, `key: {flow}`, and block lists under a
documented key). Anything else is reported as an error rather than guessed at.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

CHART = Path(__file__).resolve().parent
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"']+):(?: +(?P<value>.*))?$")
MARKER = "<!-- values-table -->"


@dataclass
class Row:
    path: str
    default: str
    doc: str


class ValuesError(Exception):
    pass


def strip_comment(text: str) -> str:
    """The value text without a trailing ` # comment` (outside quotes)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] == " "):
            return text[:i].rstrip()
    return text.rstrip()


def scalar(text: str) -> str:
    """A YAML scalar as JSON text: quoted strings, numbers, booleans, null and flow collections
    stay as written; a plain string is quoted."""
    if re.fullmatch(r'".*"|\'.*\'|true|false|null|~|-?[0-9.]+(e[-+]?[0-9]+)?|\[.*\]|\{.*\}', text):
        return '"' + text[1:-1] + '"' if text.startswith("'") else text
    return '"' + text.replace('"', '\\"') + '"'


def block_default(lines: list[str], first: int) -> str:
    """A nested block of `key: value` lines (a documented map) as one line of JSON-like text."""
    body = [(n, l) for n, l in enumerate(lines, first) if l.strip() and not l.lstrip().startswith("#")]
    if not body:
        return "{}"

    def mapping(items: list[tuple[int, str]]) -> str:
        parts, k = [], 0
        while k < len(items):
            n, line = items[k]
            m = KEY.match(line)
            if not m:
                raise ValuesError(f"values.yaml:{n + 1}: write lists inside documented maps in flow style: {line!r}")
            indent = len(m["indent"])
            child = []
            k += 1
            while k < len(items) and len(items[k][1]) - len(items[k][1].lstrip()) > indent:
                child.append(items[k])
                k += 1
            value = strip_comment(m["value"] or "")
            parts.append(f'"{m["key"]}": ' + (scalar(value) if value else mapping(child)))
        return "{" + ", ".join(parts) + "}"

    return mapping(body)


def parse(text: str) -> list[Row]:
    """The documented values of values.yaml, in file order; raises ValuesError for a value
    without a doc comment or syntax outside the supported subset."""
    lines = text.splitlines()
    rows: list[Row] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    doc: list[str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            doc = None
            i += 1
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# --"):
                doc = [stripped[4:].strip()]
            elif doc is not None:
                doc.append(stripped[1:].strip())
            i += 1
            continue
        m = KEY.match(line)
        if not m:
            raise ValuesError(f"values.yaml:{i + 1}: unsupported syntax: {line!r}")
        indent = len(m["indent"])
        key = m["key"].strip("\"'")
        value = strip_comment(m["value"] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(documented for _, _, documented in stack):
            i += 1  # inside a documented map: part of that row's default
            doc = None
            continue
        path = ".".join([k for _, k, _ in stack] + [key])
        # The block under this key: the following lines indented deeper (or list items at the
        # key's own indent), without the comments and blank lines that end it, since those
        # belong to the next key.
        j = i + 1
        while j < len(lines):
            s = lines[j].strip()
            if s and not s.startswith("#"):
                deeper = len(lines[j]) - len(lines[j].lstrip())
                if deeper < indent or (deeper == indent and not s.startswith("- ")):
                    break
            j += 1
        while j > i + 1 and (not lines[j - 1].strip() or lines[j - 1].lstrip().startswith("#")):
            j -= 1
        block = lines[i + 1 : j]
        is_list = any(l.lstrip().startswith("- ") for l in block if l.strip() and not l.lstrip().startswith("#"))
        if doc is not None:
            default = value if value else block_default(block, i + 1)
            rows.append(Row(path, default, " ".join(d for d in doc if d)))
            doc = None
            if value or is_list:
                i = j
                continue
            stack.append((indent, key, True))
            i += 1
            continue
        if value or is_list or not any(l.strip() and not l.lstrip().startswith("#") for l in block):
            raise ValuesError(f"values.yaml:{i + 1}: `{path}` has no `# --` doc comment")
        stack.append((indent, key, False))
        i += 1
    return rows


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(default: str) -> str:
    """The default in a code span."""
    return "`" + cell(default.strip()).replace("`", "'") + "`"


def render(rows: list[Row]) -> str:
    out = ["| Key | Default | Description |", "|---|---|---|"]
    out += [f"| `{r.path}` | {code(r.default)} | {cell(r.doc)} |" for r in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is not up to date")
    args = parser.parse_args()
    try:
        rows = parse((CHART / "values.yaml").read_text())
    except ValuesError as e:
        print(f"generate-readme: {e}", file=sys.stderr)
        return 1
    template = (CHART / "README.tmpl.md").read_text()
    if MARKER not in template:
        print(f"generate-readme: README.tmpl.md lacks the marker {MARKER}", file=sys.stderr)
        return 1
    readme = template.replace(MARKER, render(rows))
    target = CHART / "README.md"
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != readme:
            sys.stderr.writelines(
                difflib.unified_diff(current.splitlines(True), readme.splitlines(True), "README.md", "generated")
            )
            print("generate-readme: README.md is stale; run python3 helm/qrank/generate-readme.py", file=sys.stderr)
            return 1
        print(f"README.md is up to date ({len(rows)} values)")
        return 0
    target.write_text(readme)
    print(f"wrote {target} ({len(rows)} values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
