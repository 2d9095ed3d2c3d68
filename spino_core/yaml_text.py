"""YAML parsing for params: UTF-8 only, no key given twice, aliases bounded.

PyYAML accepts three things that break the pipeline further on, each refused here as one line:

- a mapping key given twice (a second ``split:`` section): PyYAML keeps the last one and drops
  the first one's keys silently, while DVC refuses the same file as corrupt;
- aliases that expand to millions of values (a "billion laughs" in 1.2 kB): PyYAML shares the
  aliased objects, but anything that walks or prints the value (an error message's ``repr``)
  expands it, to gigabytes;
- bytes that are not UTF-8 (YAML's encoding; DVC reads params as UTF-8).

And it reads numbers as DVC does: ``1e-3`` and ``1.5e3`` are floats in YAML 1.2 (DVC's
ruamel), but strings in PyYAML's YAML 1.1, which wants a dot and a signed exponent
(``1.0e-3``); a learning rate written ``1e-3`` (or set by ``dvc exp run -S``) was refused.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from spino_core.errors import ConfigError

#: Values reached through aliases beyond the document's own nodes: a real params file reuses
#: a few lists; a "billion laughs" needs millions.
MAX_ALIAS_EXPANSION = 10_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2's exponent floats (``1e-3``, ``1.5E3``)."""


_Loader.add_implicit_resolver(  # tried after PyYAML's own int/float patterns (no clash)
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Refused(Exception):
    """A document this module refuses: the message, without the file name."""


def parse_yaml(text: str | bytes, where: str) -> Any:
    """The Python value of one YAML document; ConfigError ``<where>: ...`` if refused.

    ``text`` given as bytes must be UTF-8. An empty document is ``None``.
    """
    if isinstance(text, bytes):
        text = _decode(text, where)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a params file") from None
    finally:
        loader.dispose()


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save the file as UTF-8"
        ) from None


def _check(root: yaml.Node) -> None:
    """Refuse duplicate keys (naming the dotted key and both lines) and alias bombs."""
    sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
    pending: set[int] = set()
    distinct = _count_nodes(root)

    def _bound(total: int) -> None:
        if total > distinct + MAX_ALIAS_EXPANSION:
            raise _Refused(
                f"aliases (*name) expand to more than {MAX_ALIAS_EXPANSION} values (an alias "
                "bomb?); write the values out instead of aliasing them"
            )

    def size(node: yaml.Node, path: str) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise _Refused(f"{path or 'the document'}: an alias refers to itself; remove it")
        pending.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                total += size(child, f"{path}[{i}]")
                _bound(total)
        elif isinstance(node, yaml.MappingNode):
            _no_duplicates(node, path)
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                total += size(k, path) + size(v, f"{path}.{name}" if path else str(name))
                _bound(total)
        pending.discard(key)
        sizes[key] = total
        return total

    size(root, "")


def _count_nodes(root: yaml.Node) -> int:
    """Distinct nodes of the composed document (an alias is its anchor's node again)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                todo.extend((k, v))
    return len(seen)


def _no_duplicates(node: yaml.MappingNode, path: str) -> None:
    lines: dict[Any, int] = {}
    for k, _ in node.value:
        if k.tag == _MERGE_TAG or not isinstance(k, yaml.ScalarNode):
            continue  # ``<<: *defaults`` may be overridden; complex keys are not params
        line = k.start_mark.line + 1
        if k.value in lines:
            dotted = f"{path}.{k.value}" if path else k.value
            raise _Refused(
                f"'{dotted}' is given twice (lines {lines[k.value]} and {line}); YAML readers "
                "disagree on which wins: keep one"
            )
        lines[k.value] = line
