"""Open registries: what a name in a configuration file refers to, built in or brought by a plugin.

Protocols, device families and instrument models are found three ways, in this order:

1. the built-in ones, by name (``calibrate``, ``dw_nanowire``, ``Agilent33500``);
2. installed packages' entry points, by name: groups ``labctl.protocols``, ``labctl.families``
   and ``labctl.instruments`` (``importlib.metadata.entry_points``; a package declares them in its
   ``pyproject.toml`` under ``[project.entry-points."labctl.families"]``);
3. a ``module:Class`` reference written in the file itself (``family = "mypkg.devices:SotMtj"``),
   imported when the file is read, as a QCoDeS station names an instrument's ``type``; or a
   ``file.py:Class`` reference to a Python file (``kind = "perceptron_rule.py:PerceptronRule"``),
   relative to the folder set with :func:`references_from` (the TOML file's folder, for whoever
   reads one), else to the current directory.

A reference that cannot be imported raises :class:`PluginError` with the import error in
one line; the configuration layer turns it into a ConfigError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

REFERENCE_RE = re.compile(r"(?:[A-Za-z_][\w.]*|[\w./-]+\.py):[A-Za-z_][\w.]*")
"""A ``module:attribute`` reference (``mypkg.rules:MyRule``) or a ``file.py:attribute`` one
(``rules/my_rule.py:MyRule``); the attribute may be dotted."""

_FOLDER: ContextVar[Path | None] = ContextVar("labctl_reference_folder", default=None)


@contextmanager
def references_from(folder: str | Path | None):
    """Within the block, ``file.py:Class`` references are relative to ``folder`` (a TOML file's folder)."""
    token = _FOLDER.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _FOLDER.reset(token)


def _import_file(path_text: str) -> Any:
    """The module of a Python file named by a reference (relative to :func:`references_from`'s folder,
    else to the current directory), imported once under a name made from its absolute path."""
    path = Path(path_text)
    if not path.is_absolute():
        path = (_FOLDER.get() or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = f"labctl_file_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class PluginError(ValueError):
    """A name or ``module:Class`` reference that does not resolve; the message is one line."""


def is_reference(text: str) -> bool:
    """Whether ``text`` is a ``module:Class`` reference (rather than a registered name)."""
    return bool(REFERENCE_RE.fullmatch(text))


def load_reference(ref: str) -> Any:
    """Import ``module:attribute`` and return the attribute.

    Raises PluginError with one line: the reference and the import error (``No module named
    'mypkg'``, ``module 'mypkg.rules' has no attribute 'MyRule'``, or the first line of an
    exception raised while importing the module).
    """
    if not is_reference(ref):
        raise PluginError(f"{ref!r} is not a 'module:Class' reference")
    module_name, _, attribute = ref.rpartition(":")
    try:
        obj: Any = _import_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time failure of a plugin is reported, not raised as is
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(f"cannot import {ref!r} ({type(exc).__name__}: {first})") from None
    return obj


class Registry(Mapping[str, Any]):
    """Name -> object for one kind of plugin: built-ins, then the entry points of ``group``.

    Entry points are loaded on first use (so a plugin may import labctl freely). An entry point
    that fails to load is left out and listed in :attr:`broken` (name -> one-line reason), so one
    broken plugin does not stop the others. :meth:`resolve` also accepts ``module:Class``
    references. ``key`` gives an object's registered name (default: the entry point's name).
    """

    def __init__(self, group: str, builtins: Callable[[], dict[str, Any]], *,
                 check: Callable[[Any], str | None] | None = None):
        self.group = group
        self._builtins = builtins
        self._check = check
        self._items: dict[str, Any] | None = None
        self.broken: dict[str, str] = {}

    def _load(self) -> dict[str, Any]:
        if self._items is None:
            items = dict(self._builtins())
            for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
                if ep.name in items:
                    continue  # a built-in name cannot be taken over by a plugin
                try:
                    obj = ep.load()
                except Exception as exc:
                    self.broken[ep.name] = f"entry point {ep.value!r}: {type(exc).__name__}: {exc}"
                    continue
                problem = self._check(obj) if self._check else None
                if problem:
                    self.broken[ep.name] = f"entry point {ep.value!r}: {problem}"
                    continue
                items[ep.name] = obj
            self._items = items
        return self._items

    def __getitem__(self, name: str) -> Any:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def resolve(self, name_or_ref: str) -> Any:
        """The object registered as ``name_or_ref``, or the one a ``module:Class`` reference names.

        Raises PluginError (one line) for an unknown name (listing the known ones) or a
        reference that does not import or is not of the right kind.
        """
        items = self._load()
        if name_or_ref in items:
            return items[name_or_ref]
        if is_reference(name_or_ref):
            obj = load_reference(name_or_ref)
            problem = self._check(obj) if self._check else None
            if problem:
                raise PluginError(f"{name_or_ref!r}: {problem}")
            return obj
        known = ", ".join(repr(k) for k in items)
        raise PluginError(f"expected one of {known} (got {name_or_ref!r}), or a 'module:Class' reference")

    def get(self, name_or_ref: str, default: Any = None) -> Any:  # type: ignore[override]
        """Like :meth:`resolve`, but ``default`` for an unknown name (a bad reference still raises)."""
        try:
            return self.resolve(name_or_ref)
        except PluginError:
            if is_reference(name_or_ref):
                raise
            return default

    def refresh(self) -> None:
        """Forget the loaded entry points (after installing a plugin in this process)."""
        self._items = None
        self.broken = {}
