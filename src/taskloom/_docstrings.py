r"""Split a docstring into its description and its parameter descriptions.

Three styles are understood, and may even be mixed:

- Google: an `Args:` (or `Arguments:`, `Parameters:`, `Keyword Args:`) section whose
  entries are `name: text` or `name (type): text`, continued on more indented lines;
- Sphinx: `:param name: text` or `:param type name: text` fields;
- NumPy: a `Parameters` header underlined with dashes, entries `name : type` with the
  text indented below.

The description is everything outside the sections (`Returns:`, `Raises:`, `Examples:`,
`:rtype:`, `Notes` over `-----`, ...), with surrounding blank lines removed. A parameter's text
is its lines joined with single spaces.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ("Docstring", "parse_docstring")

_GOOGLE_PARAMS = frozenset(
    {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments", "kwargs"}
)
_GOOGLE_OTHER = frozenset(
    {
        "attributes",
        "example",
        "examples",
        "note",
        "notes",
        "other parameters",
        "raises",
        "references",
        "return",
        "returns",
        "see also",
        "todo",
        "warning",
        "warnings",
        "warns",
        "yield",
        "yields",
    }
)
_NUMPY_PARAMS = frozenset({"parameters", "other parameters"})
_SPHINX_PARAMS = frozenset({"param", "parameter", "arg", "argument", "key", "keyword"})
# the other info fields; a line starting with a role (`:class:`...) stays in the text
_SPHINX_FIELDS = _SPHINX_PARAMS | {
    "cvar",
    "except",
    "exception",
    "ivar",
    "meta",
    "raise",
    "raises",
    "return",
    "returns",
    "rtype",
    "type",
    "var",
    "vartype",
    "yield",
    "yields",
    "ytype",
}

_GOOGLE_HEADER = re.compile(r"([A-Za-z][A-Za-z ]*):\s*")
_GOOGLE_ENTRY = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:(.*)")
_SPHINX_FIELD = re.compile(r":(\w+)([^:]*):(.*)")
_NUMPY_RULE = re.compile(r"-{3,}\s*")
_NUMPY_ENTRY = re.compile(r"\*{0,2}(\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Docstring:
    """A docstring, split."""

    description: str = ""
    """The text outside the sections: summary and body."""
    params: dict[str, str] = field(default_factory=dict[str, str])
    """Each documented parameter's text, by name (without `*`)."""


def parse_docstring(doc: str | None) -> Docstring:
    """Split `doc` (raw or already cleaned) into description and parameter texts."""
    if not doc:
        return Docstring()
    lines = inspect.cleandoc(doc).expandtabs().splitlines()
    body: list[str] = []
    params: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_numpy_header(lines, i):
            end = _numpy_section_end(lines, i + 2)
            if line.strip().lower() in _NUMPY_PARAMS:
                params.update(_numpy_entries(lines[i + 2 : end]))
            i = end
            continue
        header = _GOOGLE_HEADER.fullmatch(line)
        if header and _indent(line) == 0:
            name = header[1].strip().lower()
            if name in _GOOGLE_PARAMS or name in _GOOGLE_OTHER:
                end = _indented_block_end(lines, i + 1)
                if name in _GOOGLE_PARAMS:
                    params.update(_google_entries(lines[i + 1 : end]))
                i = end
                continue
        sphinx = _SPHINX_FIELD.fullmatch(line.strip())
        if sphinx and sphinx[1] in _SPHINX_FIELDS and _indent(line) == 0:
            end = _indented_block_end(lines, i + 1)
            words = sphinx[2].split()
            if sphinx[1] in _SPHINX_PARAMS and words:  # `:param x:` or `:param int x:`
                text = [sphinx[3], *lines[i + 1 : end]]
                params[words[-1].lstrip("*")] = _join(text)
            i = end
            continue
        body.append(line)
        i += 1
    return Docstring(description=_paragraphs(body), params=params)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(lines: list[str]) -> str:
    return " ".join(part for line in lines if (part := line.strip()))


def _paragraphs(lines: list[str]) -> str:
    """The lines, with runs of blank lines collapsed to one and the ends trimmed."""
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1]):
            out.append(line.rstrip())
    return "\n".join(out).strip()


def _indented_block_end(lines: list[str], start: int) -> int:
    """Where a block of blank or indented lines starting at `start` ends."""
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > 0):
        i += 1
    return i


def _is_numpy_header(lines: list[str], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and bool(lines[i].strip())
        and _indent(lines[i]) == 0
        and _NUMPY_RULE.fullmatch(lines[i + 1].strip()) is not None
    )


def _numpy_section_end(lines: list[str], start: int) -> int:
    i = start
    while i < len(lines) and not _is_numpy_header(lines, i):
        i += 1
    return i


def _google_entries(lines: list[str]) -> dict[str, str]:
    """`name: text` entries at the block's own indentation, continued on deeper lines."""
    entries: dict[str, list[str]] = {}
    base = min((_indent(line) for line in lines if line.strip()), default=0)
    current: list[str] | None = None
    for line in lines:
        if not line.strip():
            continue
        match = _GOOGLE_ENTRY.fullmatch(line.strip()) if _indent(line) == base else None
        if match:
            current = entries[match[1]] = [match[2]]
        elif current is not None:
            current.append(line)
    return {name: _join(text) for name, text in entries.items()}


def _numpy_entries(lines: list[str]) -> dict[str, str]:
    """`name : type` lines at the left margin, with their text indented below."""
    entries: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []
    for line in [*lines, "-"]:  # the sentinel flushes the last entry
        if not line.strip():
            continue
        if _indent(line) > 0:
            text.append(line)
            continue
        entries.update(dict.fromkeys(names, _join(text)))
        match = _NUMPY_ENTRY.fullmatch(line.strip())
        names = [n.strip().lstrip("*") for n in match[1].split(",")] if match else []
        text = []
    return entries
