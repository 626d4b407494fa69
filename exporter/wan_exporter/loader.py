"""The typed loader both config files share: YAML read with ``yaml.safe_load`` only (duplicate keys
and deep nesting refused with their path and line), then walked against dataclasses by their type
hints, so a schema lives in one place, its dataclasses. Every problem is collected with its path
(unknown keys with a did-you-mean) and raised at once as one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Annotated, Any, Literal, Mapping

import yaml

from .units import parse_duration, parse_size


class _Duration:  # marker for Annotated[float, DURATION]
    pass


class _Size:
    pass


DURATION = _Duration()
SIZE = _Size()
Duration = Annotated[float, DURATION]
Size = Annotated[int, SIZE]


class ConfigError(Exception):
    """Raised with every problem found; ``errors`` holds ``"path: message"`` strings."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{len(errors)} configuration error(s):\n" + "\n".join(f"  {e}" for e in errors))


# --------------------------------------------------------------------------- generic loader


class Loader:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}" if path else msg)

    def load(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            base, marker = args[0], args[1]
            try:
                if marker is DURATION:
                    return parse_duration(value)
                if marker is SIZE:
                    return parse_size(value)
            except ValueError as e:
                self.err(path, str(e))
                return None
            return self.load(base, value, path)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            non_none = [a for a in args if a is not type(None)]
            if isinstance(value, list):  # str | tuple[str, ...]: a list picks the tuple
                tup = [a for a in non_none if typing.get_origin(a) is tuple]
                if tup:
                    return self.load(tup[0], value, path)
            return self.load(non_none[0], value, path)
        if origin is Literal:
            if value not in args:
                self.err(path, f"expected one of {', '.join(map(str, args))}, got {value!r}"
                               f"{did_you_mean(value, args)}")
                return None  # the field keeps its default: no follow-on errors from a stand-in value
            return value
        if origin is tuple:
            if not isinstance(value, list):
                self.err(path, "expected a list")
                return ()
            return tuple(self.load(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is dict:
            if not isinstance(value, dict):
                self.err(path, "expected a mapping")
                return {}
            out = {}
            for k, v in value.items():
                out[str(k)] = self.load(args[1], v, f"{path}.{k}")
            return out
        if dataclasses.is_dataclass(tp):
            return self.load_dataclass(tp, value, path)
        if tp is Any:  # passed through whole (a Kubernetes volume source: its API server validates it)
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self.err(path, "expected true or false")
                return False
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.err(path, "expected an integer")
                return 0
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.err(path, "expected a number")
                return 0.0
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                self.err(path, "expected a string")
                return None  # as for a Literal: the field keeps its default, no follow-on errors
            return value
        raise TypeError(f"unsupported config type {tp!r}")

    def load_dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.err(path, "expected a mapping")
            value = {}
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key in value:
            if key not in fields:
                self.err(_join(path, str(key)), f"unknown key{did_you_mean(key, fields)}")
        for name, f in fields.items():
            sub = _join(path, name)
            if name in value:
                loaded = self.load(hints[name], value[name], sub)
                if loaded is None and value[name] is not None and not _optional(hints[name]):
                    continue  # error already recorded; keep the default
                kwargs[name] = loaded
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.err(sub, "required")
        try:
            return cls(**kwargs)
        except TypeError:
            return None


def _optional(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def did_you_mean(value: Any, options: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest option, else ``""``; a case slip counts as close."""
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(value), opts, n=1) or [o for o in opts if o.lower() == str(value).lower()][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""




def load_typed(cls: type, raw: Mapping[str, Any], path: str = "") -> tuple[Any, list[str]]:
    """Walk ``raw`` into the dataclass ``cls`` by its type hints: (the object, every error with its path).

    The main config and the web config both go through here, so they share one error style."""
    loader = Loader()
    return loader.load_dataclass(cls, raw, path), loader.errors


# --------------------------------------------------------------------------- YAML


YAML_MAX_DEPTH = 32  # the deepest real config is a handful of levels; PyYAML's composer recurses per level


def yaml_structure_errors(text: str) -> list[str]:
    """Duplicate keys and nesting deeper than :data:`YAML_MAX_DEPTH`, each with its path and line.

    Read from the parser's events (a loop, no recursion), before anything is composed: PyYAML
    would keep the last of two equal keys silently, and recurse once per level of nesting.
    """
    errors: list[str] = []
    stack: list[dict] = []  # {"map": bool, "path": str, "keys": set, "key": str|None, "as_key": bool, "i": int}

    def child(frame: dict) -> str:
        return f"{frame['path']}[{frame['i']}]" if not frame["map"] else (
            f"{frame['path']}.{frame['key']}" if frame["path"] else str(frame["key"]))

    def advance() -> None:
        if stack:
            top = stack[-1]
            if top["map"]:
                top["expect_key"] = True  # a value done: a key comes next
            else:
                top["i"] += 1

    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            line = ev.start_mark.line + 1 if ev.start_mark else 0
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                top = stack[-1] if stack else None
                as_key = bool(top and top["map"] and top["expect_key"])
                path = "" if top is None else (top["path"] if as_key else child(top))
                if len(stack) >= YAML_MAX_DEPTH:
                    errors.append(f"{path or 'top level'}: nested deeper than {YAML_MAX_DEPTH} levels (line {line})")
                    return errors
                stack.append({"map": isinstance(ev, yaml.MappingStartEvent), "path": path, "keys": set(),
                              "key": None, "expect_key": True, "as_key": as_key, "i": 0})
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                if frame["as_key"] and stack:
                    stack[-1]["key"], stack[-1]["expect_key"] = "<complex key>", False
                else:
                    advance()
            elif isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
                top = stack[-1] if stack else None
                if top is not None and top["map"] and top["expect_key"]:
                    key = ev.value if isinstance(ev, yaml.ScalarEvent) else f"*{ev.anchor}"
                    if key in top["keys"] and key != "<<":
                        where = f"{top['path']}.{key}" if top["path"] else key
                        errors.append(f"{where}: duplicate key (line {line}); the first one would be ignored")
                    top["keys"].add(key)
                    top["key"], top["expect_key"] = key, False
                else:
                    advance()
    except yaml.YAMLError:
        return errors  # safe_load reports the syntax error itself
    return errors


def load_yaml_mapping(text: str, source: str) -> dict:
    """``yaml.safe_load`` a file that must be a mapping (or empty); any other outcome is a ConfigError.

    Shared by the main config and the web config, so both reject object tags the same way.
    """
    try:
        problems = yaml_structure_errors(text)
        if problems:
            raise ConfigError(problems, source)
        raw = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(
            [f"{where}YAML tag not allowed ({e.problem}); the file is plain YAML, python object tags are never loaded"],
            source,
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"invalid YAML: {e}"], source) from None
    except ValueError:  # an integer of more than 4,300 digits (Python's int() limit)
        m = re.search(r"\d{4300,}", text)
        where = f"line {text.count(chr(10), 0, m.start()) + 1}: " if m else ""
        raise ConfigError([f"{where}a number of more than 4,300 digits is not a value this exporter reads"],
                          source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["top level: expected a mapping"], source)
    return raw
