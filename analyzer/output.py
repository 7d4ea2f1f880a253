"""Report and JSON output files: never replaced without `force`, never left half-written.

A file is written to a temporary file in its own directory, flushed to disk, then put in place
with one rename (or, without `force`, one hard link, which fails if the name was taken in the
meantime): a reader sees the old file or the whole new one, never a torn one, and a run that
dies mid-write leaves no partial output behind. Every failure is an `OutputError` whose message
is one line naming the file and the reason (permission denied, no space left on device, ...).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer.durable import fsync_directory_if_possible
from analyzer.errors import OutputError, OutputExistsError


def check_output(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse, before any work is done, an output that exists (without `force`), is a directory,
    or whose directory is missing. Writability is only known by writing: `write_text` says so."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise OutputError(f"{target}: cannot write (directory {target.parent} does not exist)")
    if not force and (target.exists() or target.is_symlink()):
        raise OutputExistsError(f"{target}: exists; pass --force to replace it")
    return target


def write_text(path: str | os.PathLike[str], text: str, force: bool = False) -> Path:
    """Write `text` to `path` atomically; refuse to replace an existing file unless `force`."""
    target = check_output(path, force)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(target))
        _put_in_place(tmp, target, force)
        tmp = None
    except OSError as e:
        raise OutputError(f"{target}: cannot write ({_reason(e)})") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_directory_if_possible(target.parent)
    return target


def write_json(path: str | os.PathLike[str], data: Any, force: bool = False) -> Path:
    """`write_text` of `data` as indented JSON with a final newline."""
    return write_text(path, dumps_indented(data) + "\n", force)


# `json.dumps(doc, indent=2)`, the same text, in a third less time and written as it goes. With
# an indent, the standard library drops its C encoder for a Python one built of nested
# generators: a million manifests' prediction took 12 s to encode, and its 300 MB were held
# twice over before the first byte went out. Here the containers are walked by a plain recursive
# function and every string is escaped by the C function json itself uses; anything else (a
# dict with keys that are not strings, a value json encodes by a rule of its own) is handed to
# `json.dumps`, so the text stays exactly the standard library's.
_ESCAPE = json.encoder.encode_basestring_ascii
_STEP = "  "
_SPILL = 1 << 16  # pieces held before they are written


class _Pieces(list[str]):
    """The text so far, handed to `write` (when there is one) every `_SPILL` pieces."""

    def __init__(self, write: Callable[[str], object] | None) -> None:
        super().__init__()
        self.write = write

    def spill(self) -> None:
        if self.write is not None:
            self.write("".join(self))
            self.clear()


def dumps_indented(doc: Any) -> str:
    """`json.dumps(doc, indent=2)`, the same text (TypeError on what json cannot encode)."""
    parts = _Pieces(None)
    _encode(doc, parts, "\n")
    return "".join(parts)


def write_indented(doc: Any, write: Callable[[str], object]) -> None:
    """`dumps_indented(doc)` handed to `write` piece by piece, never held whole."""
    parts = _Pieces(write)
    _encode(doc, parts, "\n")
    parts.spill()


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return str(_ESCAPE(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and value == value and value not in (_INF, -_INF):
        return float.__repr__(value)
    return None


_INF = float("inf")


def _encode(value: Any, parts: _Pieces, newline: str) -> None:
    """Append `value`'s text; `newline` is a line break and the indent of its own line."""
    text = _scalar(value)
    if text is not None:
        parts.append(text)
    elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
        _encode_dict(value, parts, newline)
    elif isinstance(value, list | tuple):
        _encode_list(value, parts, newline)
    else:  # NaN, infinities, dicts with other keys, what json refuses: json says
        parts.append(json.dumps(value, indent=2).replace("\n", newline))


def _encode_dict(value: dict[str, Any], parts: _Pieces, newline: str) -> None:
    if not value:
        parts.append("{}")
        return
    inner = newline + _STEP
    parts.append("{")
    first = True
    for key, item in value.items():
        parts.append(inner if first else "," + inner)
        first = False
        parts.append(_ESCAPE(key))
        parts.append(": ")
        if type(item) is str:  # the common case, without a call
            parts.append(_ESCAPE(item))
        else:
            _encode(item, parts, inner)
    parts.append(newline)
    parts.append("}")


def _encode_list(value: list[Any] | tuple[Any, ...], parts: _Pieces, newline: str) -> None:
    if not value:
        parts.append("[]")
        return
    inner = newline + _STEP
    parts.append("[")
    if all(type(item) is str for item in value):  # digests: escaped and joined in C
        parts.append(inner)
        parts.append(("," + inner).join(map(_ESCAPE, value)))
    else:
        templates: dict[tuple[str, ...], _Template | None] = {}
        first = True
        for item in value:
            parts.append(inner if first else "," + inner)
            first = False
            text = _templated(item, templates, inner)
            if text is None:
                _encode(item, parts, inner)
            else:
                parts.append(text)
            if len(parts) > _SPILL:
                parts.spill()
    parts.append(newline)
    parts.append("]")


# Records (lists of dicts with the same keys: a prediction's manifests, pairs, hazards, rows of
# a table) printed through one %-template per set of keys, each value escaped in C: walking
# each record as a dict was most of the time of a million manifests' JSON. A list may mix
# shapes (hazards of several types), so templates are kept per key tuple.
# (keys, text with %s where the values go, the indent of a field's own line)
_Template = tuple[tuple[str, ...], str, str]


def _templated(
    item: Any, templates: dict[tuple[str, ...], _Template | None], newline: str
) -> str | None:
    """`item`'s text through the template of its keys (made at the first record with them);
    None when it is not a record a template can print (the caller walks it)."""
    if type(item) is not dict:
        return None
    keys = tuple(item)
    if keys in templates:
        template = templates[keys]
    else:
        template = templates[keys] = _record_template(item, newline)
    return None if template is None else _record(item, template)


def _record_template(item: dict[Any, Any], newline: str) -> _Template | None:
    """The text of a record like `item` with %s where its values go, and its keys in order;
    None when `item` is empty or has a key that is not of type str."""
    if not item or any(type(k) is not str for k in item):
        return None
    inner = newline + _STEP
    fields = ("," + inner).join(_ESCAPE(k).replace("%", "%%") + ": %s" for k in item)
    return tuple(item), "{" + inner + fields + newline + "}", inner


_PLAIN = {True: "true", False: "false", None: "null"}


def _record(item: dict[str, Any], template: _Template) -> str | None:
    """`item` (a dict with exactly the template's keys, in order) through the template, when
    its values are of type str, int, bool, None or lists of str; None otherwise (the caller
    walks it)."""
    _, text, inner = template
    try:  # strings only, the common case: escaped in C (a str subclass escapes as json does)
        return text % tuple(map(_ESCAPE, item.values()))
    except TypeError:
        pass
    values = []
    for v in item.values():
        kind = type(v)
        if kind is str:
            values.append(_ESCAPE(v))
        elif kind is int:
            values.append(int.__repr__(v))
        elif kind is bool or v is None:
            values.append(_PLAIN[v])
        elif kind is list and all(type(x) is str for x in v):  # tags, children of a hazard
            values.append(_string_list(v, inner))
        else:
            return None
    return text % tuple(values)


def _string_list(strings: list[str], newline: str) -> str:
    """A list of strings as `_encode_list` prints it at `newline`."""
    if not strings:
        return "[]"
    inner = newline + _STEP
    return "[" + inner + ("," + inner).join(map(_ESCAPE, strings)) + newline + "]"


def _put_in_place(tmp: str, target: Path, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and exclusive: fails if the name appeared meanwhile
    except FileExistsError as e:
        raise OutputExistsError(f"{target}: exists; pass --force to replace it") from e
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A filesystem without hard links: check, then rename (a race with another writer
        # of the same name is then possible, and only then).
        if target.exists():
            raise OutputExistsError(f"{target}: exists; pass --force to replace it") from e
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _new_file_mode(target: Path) -> int:
    """The mode the file would have had if opened plainly: the old file's, else 0666 - umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__
