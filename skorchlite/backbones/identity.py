"""What a module backbone's outputs depend on, as one digest: the key of its
cached embeddings and of the networks built from it in this process.

A module's outputs depend on more than its state dict: the code of its
classes (a notebook cell run again redefines ``forward``), buffers that are
not persistent, tensors and plain values held as attributes
(``self.scale = 2.0``), functions it holds or calls (their code, defaults,
closures and the globals they read), and a ``forward`` replaced on the
instance. :func:`module_identity` digests all of these; code is digested as
Python compiled it (bytecode, constants, names), so it needs no source file
and comments or moved lines do not count; Python's bytecode tag
(``cpython-311``) is in the digest, since bytecode differs between Python
releases. The classes and functions of torch, torchvision, numpy and the
standard library are named, not digested, and their versions are not in the
digest: an upgrade of torch keeps a fitted model and its cached embeddings,
as it does for a named backbone (whose embeddings are keyed by
:data:`skorchlite.versioning.EMBEDDING_FORMAT`). What cannot be
digested (forward hooks, an attribute of an unknown kind, an object graph
too large) makes the module *unkeyed*: its digest covers the rest, and its
embeddings are not cached.
"""

from __future__ import annotations

import dis
import enum
import functools
import hashlib
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

from ..cache import CacheWarning
from ..private_api import global_forward_hooks

__all__ = ["ModuleIdentity", "module_identity", "upgrade_module_digest", "warn_uncached"]

# Packages whose classes and functions are named, not digested.
_VERSIONED = sys.stdlib_module_names | {"builtins", "torch", "torchvision", "numpy"}
# What a digest starts with. skorchlite 0.3.0 and earlier started it with the
# full versions of Python and of those packages, so that any upgrade refused
# a fitted model; :func:`upgrade_module_digest` recognises those digests.
_HEADER = ("module identity 2", sys.implementation.cache_tag or sys.version)
_HEADER_1 = (
    "module identity 1",
    f"python {sys.version}",
    f"torch {torch.__version__}",
    f"torchvision {torchvision.__version__}",
    f"numpy {np.__version__}",
)
# nn.Module's own bookkeeping: parameters, buffers and submodules are digested
# apart, hooks are checked apart, and the mode is the caller's (eval to embed).
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_FORWARD_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
# Class attributes that say nothing about what the class computes.
_CLASS_INTERNALS = {"_abc_impl"}
# Beyond this many values the module holds too much to digest at each call.
_MAX_VALUES = 200_000
_SIMPLE = (type(None), bool, int, float, complex, str, bytes, bytearray, range, slice, type(Ellipsis))
_TORCH_VALUES = (torch.dtype, torch.device, torch.Size, torch.layout, torch.memory_format)
_NAMED_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
_LOADS_GLOBAL = {"LOAD_GLOBAL", "LOAD_NAME"}
_LOADS_ATTRIBUTE = {"LOAD_ATTR", "LOAD_METHOD"}
# The unkeyed modules this process has warned about, by digest: one warning each.
_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class ModuleIdentity:
    """A module's digest, and why it may miss something.

    Attributes
    ----------
    digest : str
        SHA-256 (64 hex digits) of everything its outputs were found to depend on.
    unkeyed : str or None
        ``None`` when the digest covers everything; else what it cannot
        cover, in words (then its outputs must not be cached).
    """

    digest: str
    unkeyed: str | None


class _Unkeyed(Exception):
    """A value the digest cannot cover."""


class _Digest:
    """One module's digest, built as the module's objects are visited."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        # Objects visited, by id, in order: a second visit refers to the
        # first by its position (kept alive, so that no id is reused meanwhile).
        self.visited: dict[int, int] = {}
        self.keep: list[Any] = []
        self.unkeyed: list[str] = []

    def add(self, *parts: str) -> None:
        for part in parts:
            self.sha.update(part.encode("utf-8", "surrogatepass") + b"\0")

    def tensor(self, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().cpu().contiguous()
        self.add(f"tensor|{tensor.dtype}|{tuple(tensor.shape)}")
        self.sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")

    def seen(self, obj: Any) -> bool:
        """Whether ``obj`` was visited already (then refer to that visit); else record it."""
        if len(self.keep) >= _MAX_VALUES:
            raise _Unkeyed(f"it holds more than {_MAX_VALUES} objects")
        if id(obj) in self.visited:
            self.add(f"ref {self.visited[id(obj)]}")
            return True
        self.visited[id(obj)] = len(self.keep)
        self.keep.append(obj)
        return False

    def module(self, root: nn.Module, prefix: str) -> None:
        for path, module in root.named_modules(prefix=prefix):
            if self.seen(module):
                continue
            self.add("module", path)
            self.value(type(module), path)
            for hooks in _FORWARD_HOOKS:
                if getattr(module, hooks, None):
                    self.unkeyed.append(f"forward hooks on {path or 'the module'}")
            for name, param in module._parameters.items():
                self.add("parameter", name)
                self.value(param, f"{path}.{name}")
            for name, buffer in module._buffers.items():
                self.add("buffer", name, str(name in module._non_persistent_buffers_set))
                self.value(buffer, f"{path}.{name}")
            if isinstance(module, torch.jit.ScriptModule):
                self.add("script", str(getattr(module, "code", "")))
            for name, value in vars(module).items():
                if name not in _MODULE_INTERNALS:
                    self.add("attribute", name)
                    self.value(value, f"{path}.{name}" if path else name)

    def value(self, value: Any, where: str) -> None:
        if isinstance(value, _SIMPLE) or isinstance(value, _TORCH_VALUES):
            self.add(f"{type(value).__name__}:{value!r}")
        elif isinstance(value, enum.Enum):
            self.add("enum", _name(type(value)), value.name)
        elif isinstance(value, types.ModuleType):
            self.add("package", value.__name__)
        elif isinstance(value, nn.Module):  # these two record their own visits
            self.module(value, where)
        elif isinstance(value, type):
            self.cls(value)
        elif self.seen(value):
            return
        elif isinstance(value, types.CodeType):
            self.code(value)
        elif isinstance(value, torch.Tensor):
            self.tensor(value)
        elif isinstance(value, (np.ndarray, np.generic)):
            if value.dtype.hasobject:
                raise _Unkeyed(f"{where} is an array of Python objects")
            self.add(f"ndarray|{value.dtype.str}|{np.shape(value)}")
            self.sha.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (tuple, list, set, frozenset)):
            items = sorted(map(_sort_key, value)) if isinstance(value, (set, frozenset)) else value
            self.add(type(value).__name__, str(len(value)))
            for i, item in enumerate(items):
                self.value(item, f"{where}[{i}]")
        elif isinstance(value, dict):
            self.add(type(value).__name__, str(len(value)))
            for key, item in value.items():
                self.value(key, f"{where} key")
                self.value(item, f"{where}[{key!r}]")
        else:
            self.callable_or_object(value, where)

    def callable_or_object(self, value: Any, where: str) -> None:
        if isinstance(value, types.FunctionType):
            self.function(value, where)
        elif isinstance(value, types.MethodType):
            self.add("method")
            self.value(value.__func__, where)
            self.value(value.__self__, f"{where}.__self__")
        elif isinstance(value, _NAMED_CALLABLES):
            owner = getattr(value, "__self__", None)
            self.add("named", getattr(value, "__module__", None) or "", getattr(value, "__qualname__", repr(value)))
            if owner is not None and not isinstance(owner, (types.ModuleType, type)):
                self.value(owner, f"{where}.__self__")
        elif isinstance(value, functools.partial):
            self.add("partial")
            self.value(value.func, where)
            self.value(value.args, f"{where} args")
            self.value(value.keywords, f"{where} keywords")
        elif isinstance(value, (staticmethod, classmethod)):
            self.value(value.__func__, where)
        elif isinstance(value, property):
            self.value((value.fget, value.fset, value.fdel), where)
        elif _root(type(value)) in _VERSIONED - {"builtins"}:  # a logger, a lock, an fx graph
            self.add("instance", _name(type(value)))
            if hasattr(value, "__wrapped__"):  # functools.lru_cache and the like, around a function
                self.value(value.__wrapped__, where)
        elif hasattr(value, "__dict__") and not hasattr(type(value), "__slots__"):
            self.add("object")
            self.cls(type(value))
            self.value(vars(value), where)
        else:
            raise _Unkeyed(f"{where} holds a {_name(type(value))}, which cannot be fingerprinted")

    def function(self, function: types.FunctionType, where: str) -> None:
        self.add("function", _name(function))
        if _root(function) in _VERSIONED:
            return
        self.code(function.__code__)
        self.value(function.__defaults__, f"{where} defaults")
        self.value(function.__kwdefaults__, f"{where} defaults")
        for i, cell in enumerate(function.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # not yet assigned
                self.add("empty cell")
                continue
            self.value(contents, f"{where} closure {function.__code__.co_freevars[i]}")
        module_globals = function.__globals__
        for chain in sorted(_globals_read(function.__code__)):
            if chain[0] not in module_globals:
                continue  # a builtin, or not defined yet
            value = module_globals[chain[0]]
            self.add("global", chain[0])
            self.value(value, f"global {chain[0]} of {_name(function)}")
            # utils.act(x): what a package of the user's own gives is read too.
            for attribute in chain[1:]:
                if not isinstance(value, types.ModuleType) or value.__name__.partition(".")[0] in _VERSIONED:
                    break
                value = getattr(value, attribute, None)
                self.add("global attribute", attribute)
                self.value(value, f"{'.'.join(chain)} of {_name(function)}")

    def code(self, code: types.CodeType) -> None:
        # Not the file name or line numbers: moving code changes nothing it computes.
        self.add("code", code.co_name, str(code.co_argcount), str(code.co_kwonlyargcount), str(code.co_flags))
        self.add(*code.co_names, "|", *code.co_varnames, "|", *code.co_freevars, "|", *code.co_cellvars)
        self.sha.update(code.co_code)
        # Through value(): a frozenset's repr follows the hash seed, its digest does not.
        self.value(code.co_consts, f"constants of {code.co_qualname}")

    def cls(self, cls: type) -> None:
        self.add("class", _name(cls))
        for klass in cls.__mro__:
            if _root(klass) in _VERSIONED or self.seen(klass):
                continue
            self.add("defines", _name(klass))
            for name, attr in vars(klass).items():
                dunder = name.startswith("__") and name.endswith("__")
                if name in _CLASS_INTERNALS or (dunder and not _is_code(attr)):
                    continue
                self.add("class attribute", name)
                self.value(attr, f"{_name(klass)}.{name}")


def _is_code(attr: Any) -> bool:
    return isinstance(attr, (types.FunctionType, staticmethod, classmethod, property))


def _globals_read(code: types.CodeType) -> set[tuple[str, ...]]:
    """The globals a code object (and the code nested in it) reads, each
    with the attributes read from it right after (``utils.act`` is
    ``("utils", "act")``)."""
    chains: set[tuple[str, ...]] = set()
    chain: list[str] = []
    for op in [*dis.get_instructions(code), None]:
        if chain and op is not None and op.opname in _LOADS_ATTRIBUTE:
            chain.append(str(op.argval))
            continue
        if chain:
            chains.add(tuple(chain))
        chain = [str(op.argval)] if op is not None and op.opname in _LOADS_GLOBAL else []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            chains |= _globals_read(const)
    return chains


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _root(obj: Any) -> str:
    """The top-level package a class or function comes from."""
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _sort_key(item: Any) -> str:
    return f"{type(item).__name__}:{item!r}"


def module_identity(module: nn.Module) -> ModuleIdentity:
    """Digest what ``module``'s outputs depend on (see the module's docstring).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    ModuleIdentity

    Examples
    --------
    >>> class Scale(nn.Module):
    ...     def __init__(self, scale):
    ...         super().__init__()
    ...         self.scale = scale
    ...
    ...     def forward(self, x):
    ...         return x * self.scale
    >>> a, b = module_identity(Scale(2.0)), module_identity(Scale(3.0))
    >>> a.digest != b.digest, a.unkeyed
    (True, None)
    >>> net = Scale(2.0)
    >>> _ = net.register_forward_hook(lambda module, inputs, output: output + 1)
    >>> module_identity(net).unkeyed
    'forward hooks on the module'
    """
    return _identity(module, _HEADER)


def _identity(module: nn.Module, header: tuple[str, ...]) -> ModuleIdentity:
    digest = _Digest()
    digest.add(*header)
    try:
        digest.module(module, "")
    except _Unkeyed as err:
        digest.unkeyed.insert(0, str(err))
    except RecursionError:
        digest.unkeyed.insert(0, "its attributes nest too deeply")
    if global_forward_hooks():
        digest.unkeyed.append("global forward hooks (torch.nn.modules.module.register_module_forward_hook)")
    unkeyed = "; ".join(dict.fromkeys(digest.unkeyed)) or None
    return ModuleIdentity(digest.sha.hexdigest(), unkeyed)


def upgrade_module_digest(key: Any, module: Any) -> Any:
    """A fitted ``key`` (a dict of strings: a fingerprint, a network key)
    with ``module``'s digest as skorchlite 0.3.0 and earlier computed it
    replaced by :func:`module_identity`'s.

    Those digests held the versions of Python, torch, torchvision and
    numpy, so they are recognised only under the versions that wrote them:
    under others ``key`` is returned as it is, and the check of the fitted
    model against its parameters refuses it, as it did.

    Parameters
    ----------
    key : object
        A fitted key; anything but a dict is returned as it is.
    module : object
        The estimator's backbone; anything but a module returns ``key``.

    Returns
    -------
    object

    Examples
    --------
    >>> net = nn.Linear(2, 2)
    >>> old = {"weights_sha256": _identity(net, _HEADER_1).digest}
    >>> upgrade_module_digest(old, net) == {"weights_sha256": module_identity(net).digest}
    True
    """
    if not isinstance(key, dict) or not isinstance(module, nn.Module):
        return key
    now = module_identity(module).digest
    texts = [value for value in key.values() if isinstance(value, str)]
    if any(now in text for text in texts):
        return key
    earlier = _identity(module, _HEADER_1).digest
    return {name: value.replace(earlier, now) if isinstance(value, str) else value for name, value in key.items()}


def warn_uncached(name: str, digest: str, unkeyed: str) -> None:
    """Say, once per module and process, that the embeddings of the module
    backbone ``name`` (digest ``digest``) are not cached, and why (``unkeyed``).

    Parameters
    ----------
    name : str
        The backbone's name (``module:<class>``).
    digest : str
    unkeyed : str
        :attr:`ModuleIdentity.unkeyed`.
    """
    with _warned_lock:
        if digest in _warned:
            return
        _warned.add(digest)
    warnings.warn(
        f"The embeddings of backbone {name} are not cached: its fingerprint cannot cover {unkeyed}, so cached "
        "vectors could be stale. To cache them, remove that (do a hook's work in forward(), hold plain values, "
        "tensors or functions as attributes), or save the weights and pass backbone=(architecture, checkpoint path).",
        CacheWarning,
        stacklevel=4,
    )
