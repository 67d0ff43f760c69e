"""A spec file's YAML, read within bounds: file size, nodes after alias expansion, nesting, repeated keys.

PyYAML's safe loader refuses code, not size: an alias bomb ("billion laughs") expands to
billions of nodes once anything walks it, deep nesting overflows the stack, and a key
written twice silently keeps its last value. `read_documents` refuses each of these with
its line before anything walks the data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 256 * 1024  # the largest committed spec file is about 5 KB
MAX_NODES = 100_000  # YAML nodes per file, every alias counted as the whole subtree it repeats
MAX_DEPTH = 32  # nesting levels, aliases expanded; a spec needs about 6
MAX_INT_CHARS = 64  # Python refuses int("9" * 5000), and a hex literal that long would build a huge int

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DocumentError(yaml.MarkedYAMLError):
    """Well-formed YAML that a spec file may not hold: too large, too deep, a repeated key."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


class ReadError(Exception):
    """The file cannot be read as UTF-8 text within the size bound."""


class BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts nodes with aliases expanded, bounds nesting and refuses repeated keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._open = 0  # nodes being composed: the depth of the current one
        self._nodes = 0  # nodes composed in this file so far, aliases expanded
        self._extent: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height) with aliases expanded

    def compose_document(self) -> Node | None:
        self._extent = {}  # node ids of an earlier document may be reused
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        mark = self.peek_event().start_mark
        alias = self.check_event(yaml.AliasEvent)
        if alias:
            node = super().compose_node(parent, index)
            assert node is not None  # PyYAML returns None only at the end of the stream
            if id(node) not in self._extent:  # its anchor is still open: the alias is inside what it names
                raise DocumentError("an alias refers to a node that contains it (a recursive alias)", mark)
        else:
            self._open += 1
            _check_depth(self._open, mark)
            try:
                node = super().compose_node(parent, index)
            finally:
                self._open -= 1
            assert node is not None
            children = [self._extent[id(child)] for child in _children(node)]
            self._extent[id(node)] = (1 + sum(s for s, _ in children), 1 + max((h for _, h in children), default=0))
        size, height = self._extent[id(node)]
        _check_depth(self._open + height, mark)
        # A new node's children were counted as they were composed; an alias repeats its whole subtree.
        self._nodes += size if alias else 1
        if self._nodes > MAX_NODES:
            raise DocumentError(f"more than {MAX_NODES:,} YAML nodes once aliases are expanded "
                                f"(an alias bomb?); expected at most {MAX_NODES:,}", mark)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue  # merged keys may be overridden; an unhashable key is refused by PyYAML itself
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise DocumentError(f"duplicate key {key!r:.60} (first on line {first_line[key]}, again on line "
                                    f"{line}); a mapping holds each key once", key_node.start_mark)
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(node.value) > MAX_INT_CHARS:
            raise DocumentError(f"an integer of {len(node.value):,} characters; expected at most {MAX_INT_CHARS}",
                                node.start_mark)
        return super().construct_yaml_int(node)


def _check_depth(depth: int, mark: yaml.Mark) -> None:
    if depth > MAX_DEPTH:
        raise DocumentError(f"nesting deeper than {MAX_DEPTH} levels (aliases expanded); expected at most "
                            f"{MAX_DEPTH} (a spec needs about 6)", mark)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
# YAML 1.1 (PyYAML) reads 1e-3 as the string "1e-3"; YAML 1.2 and every user read it as a float.
BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_text(file: Path) -> str:
    """The file's text; ReadError if it is over MAX_FILE_BYTES or not UTF-8."""
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ReadError(f"cannot read: {err.strerror or err}") from err
    if len(data) > MAX_FILE_BYTES:
        raise ReadError(f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; expected at most "
                        f"{MAX_FILE_BYTES:,} bytes (a spec is a few KB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ReadError(f"not UTF-8 text: byte 0x{data[err.start]:02x} on line {line} ({err.reason})") from err


def read_documents(file: Path) -> list[Any]:
    """Every non-empty YAML document of the file; ReadError or yaml.YAMLError (DocumentError among them)."""
    return [doc for doc in yaml.load_all(read_text(file), Loader=BoundedLoader) if doc is not None]
