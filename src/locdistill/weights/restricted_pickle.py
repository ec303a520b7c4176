"""Read a torch checkpoint that holds foreign pickled objects without running or trusting the file.

Real mmdetection checkpoints carry pickled mmengine/mmcv objects and numpy arrays in ``meta`` and
``message_hub``, so ``torch.load(weights_only=True)`` refuses them. :func:`restricted_load` uses torch's
own file reader (zip and the legacy non-zip format) with a pure-Python unpickler that:

- rebuilds tensors and plain containers through callables made fresh for each load (never torch's own
  functions or classes, so nothing the file does to them outlives the load);
- turns every other global the file names into an inert :class:`Placeholder` class (made fresh for
  each load), whose instances keep the arguments, state and items the pickle gives them as data;
- calls (REDUCE, NEWOBJ, OBJ, INST) only those callables, refuses BUILD (``__setstate__`` / attribute
  state) on anything but an object created by a call in this load, refuses item/list/set updates on a
  handed-out global, and refuses EXT and text persistent-id opcodes, which torch never writes;
- adds up the bytes of the storages the file asks for and refuses the file before reading past
  ``max_storage_bytes``.

Loading such a file therefore never runs its code and can never change state outside the returned data.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from locdistill.weights.errors import WeightsError
from locdistill.weights.sniff import describe_unreadable

DEFAULT_MAX_STORAGE_BYTES = 8 << 30
"""Default cap on the bytes of all tensor storages of one file (8 GiB; a GFL X101-DCN is ~0.4 GiB)."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint whose pickle tries something a weights file never needs, or that is too large."""


class Placeholder:
    """Stands in for any object the checkpoint names that is not a tensor or plain data.

    The subclass made for each global records what it replaced in ``module``/``name``. An instance
    keeps, as inert data, whatever the pickle gave it on any construction path (a call, ``__new__``
    without ``__init__``, BUILD): ``args``/``kwargs``, ``state`` (``__setstate__``), ``dict_items``
    (a pickled dict subclass's items, SETITEM(S)) and ``list_items`` (a list subclass's, APPEND(S)).
    """

    module: ClassVar[str] = ""
    name: ClassVar[str] = ""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    dict_items: dict[Any, Any]
    list_items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.dict_items, obj.list_items = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # __new__ has kept the arguments
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def add(self, value: Any) -> None:  # set subclasses are rebuilt with ADDITEMS
        self.list_items.append(value)

    def __repr__(self) -> str:
        return f"<placeholder for {self.module}.{self.name}>"


_MAX_DEPTH = 32  # nesting followed by plain_data / contains_placeholder (a crafted pickle can be cyclic)


def plain_data(value: Any, _depth: int = 0) -> Any:
    """``value`` with placeholders of dict/list subclasses (e.g. mmengine's ``ConfigDict``, rebuilt from
    SETITEMS / APPENDS or from a single dict/list argument) turned into plain dicts/lists, recursively;
    any other placeholder is kept as it is."""
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, Placeholder):
        only_arg = value.args[0] if len(value.args) == 1 and not value.kwargs else None
        if value.dict_items or (isinstance(only_arg, dict) and not value.list_items):
            items = value.dict_items or only_arg
            return {k: plain_data(v, _depth + 1) for k, v in items.items()}  # type: ignore[union-attr]
        if value.list_items or isinstance(only_arg, list):
            return [plain_data(v, _depth + 1) for v in value.list_items or only_arg]  # type: ignore[union-attr]
        return value
    if type(value) in (dict, collections.OrderedDict):
        return {k: plain_data(v, _depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain_data(v, _depth + 1) for v in value)
    return value


def contains_placeholder(value: Any, _depth: int = 0) -> bool:
    """Whether ``value`` (plain containers, recursively) holds a :class:`Placeholder` (or nests too deep)."""
    if isinstance(value, Placeholder) or _depth > _MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(contains_placeholder(v, _depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_placeholder(v, _depth + 1) for v in value)
    return False


def _fresh_globals() -> dict[tuple[str, str], Any]:
    """The globals a tensor checkpoint needs, as new callables for one load, plus the (immutable) dtypes."""

    def rebuild_tensor_v2(
        storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool, hooks: Any, meta: Any = None
    ) -> torch.Tensor:  # the file's backward hooks are dropped (a weights file has none)
        args: tuple[Any, ...] = (storage, offset, size, stride, requires_grad, collections.OrderedDict())
        return torch._utils._rebuild_tensor_v2(*args, *(() if meta is None else (meta,)))  # type: ignore[attr-defined]

    def rebuild_parameter(data: torch.Tensor, requires_grad: bool, hooks: Any) -> torch.Tensor:
        return torch.nn.Parameter(data, requires_grad)

    def new(cls: type) -> Any:
        def call(*args: Any) -> Any:
            return cls(*args)

        return call

    out: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("collections", "OrderedDict"): new(collections.OrderedDict),
        ("torch", "Size"): new(torch.Size),
        ("builtins", "set"): new(set),
        ("builtins", "frozenset"): new(frozenset),
        ("builtins", "slice"): new(slice),
        ("builtins", "complex"): new(complex),
    }
    for dtype in _DTYPES:  # immutable singletons; BUILD on them is refused like on any global
        out[("torch", str(dtype).split(".")[1])] = dtype
    return out


_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_DTYPES += (torch.int64, torch.int32, torch.uint8, torch.int8, torch.int16, torch.bool)


_BASE_DISPATCH: dict[int, Any] = pickle._Unpickler.dispatch  # type: ignore[assignment]


class _RestrictedUnpickler(pickle._Unpickler):
    """See the module docstring. ``max_storage_bytes`` is set on the per-load subclass."""

    max_storage_bytes: ClassVar[int] = DEFAULT_MAX_STORAGE_BYTES
    dispatch: ClassVar[dict[int, Any]] = dict(_BASE_DISPATCH)
    # pickle._Unpickler's undocumented internals used below
    stack: list[Any]
    metastack: list[list[Any]]
    pop_mark: Callable[[], list[Any]]
    readline: Callable[[], bytes]
    proto: int

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._globals = _fresh_globals()
        self._handed_out: dict[int, tuple[Any, str]] = {}  # id -> (object, its name); kept alive
        self._callables: dict[int, Any] = {id(v): v for v in self._globals.values() if callable(v)}
        self._created: dict[int, Any] = {}
        self._storages: set[Any] = set()
        self._storage_bytes = 0

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:  # protocol 2 names Python 2's modules (__builtin__.set); map them as pickle does
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = self._globals.get((module, name))
        if obj is None:
            obj = type(f"Placeholder[{module}.{name}]", (Placeholder,), {"module": module, "name": name})
            self._callables[id(obj)] = obj
        self._handed_out[id(obj)] = (obj, f"{module}.{name}")
        return obj

    def _describe(self, obj: Any) -> str:
        if id(obj) in self._handed_out:
            return f"the global {self._handed_out[id(obj)][1]}"
        return _short(obj)

    def _refuse(self, what: str) -> None:
        raise UnsafeCheckpointError(f"the pickle {what}, which a weights file never does")

    def _call(self, func: Any, args: Any, kwargs: Any = None, new: bool = False) -> None:
        if id(func) not in self._callables:
            self._refuse(f"calls {self._describe(func)}, which is no global it named")
        if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
            self._refuse("passes malformed call arguments")
        kwargs = kwargs or {}
        obj = func.__new__(func, *args, **kwargs) if new and isinstance(func, type) else func(*args, **kwargs)
        self._created[id(obj)] = obj
        self.stack.append(obj)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self._call(self.stack.pop(), args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        self._call(self.stack.pop(), args, new=True)

    def _load_newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        self._call(self.stack.pop(), args, kwargs, new=True)

    def _load_obj(self) -> None:
        args = self.pop_mark()
        self._call(args.pop(0), tuple(args), new=not args)

    def _load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        args = self.pop_mark()
        self._call(self.find_class(module, name), tuple(args), new=not args)

    def _load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if id(target) not in self._created or isinstance(target, (type, types.FunctionType)):
            self._refuse(f"sets the state (BUILD) of {self._describe(target)}, not an object it built")
        _BASE_DISPATCH[pickle.BUILD[0]](self)

    def _check_update_target(self, opcode: bytes) -> None:
        depth = {pickle.SETITEM: 3, pickle.APPEND: 2}.get(opcode)  # else the object below the MARK
        stack = self.stack if depth else (self.metastack[-1] if self.metastack else [])
        target = stack[-(depth or 1)] if len(stack) >= (depth or 1) else None
        if id(target) in self._handed_out or isinstance(target, (type, types.FunctionType)):
            self._refuse(f"modifies {self._describe(target)}, which it did not build")

    def _load_binpersid(self) -> None:
        pid = self.stack.pop()
        self._count_storage(pid)
        self.stack.append(self.persistent_load(pid))

    def _count_storage(self, pid: Any) -> None:
        """Refuse anything but a storage id, and the file once its storages pass the cap."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            self._refuse(f"asks for a persistent object {_short(pid)} that is not a tensor storage")
        # zip: ("storage", type, key, location, numel); legacy: (..., numel, view_metadata)
        storage_type, key, numel = pid[1], pid[2], pid[4]
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype) or type(numel) is not int or numel < 0:
            raise UnsafeCheckpointError(f"the pickle asks for a malformed tensor storage {_short(pid)}")
        if key in self._storages:
            return
        self._storages.add(key)
        self._storage_bytes += numel * dtype.itemsize
        if self._storage_bytes > self.max_storage_bytes:
            raise UnsafeCheckpointError(
                f"its tensors need more than the cap of {self.max_storage_bytes} bytes "
                f"({self.max_storage_bytes / 2**30:.3g} GiB; max_storage_bytes)"
            )

    def _refuse_opcode(self) -> None:
        self._refuse("uses an EXT or text persistent-id opcode")


def _update_guard(opcode: bytes) -> Any:
    def load(self: _RestrictedUnpickler) -> None:
        self._check_update_target(opcode)
        _BASE_DISPATCH[opcode[0]](self)

    return load


_RestrictedUnpickler.dispatch.update(
    {
        pickle.REDUCE[0]: _RestrictedUnpickler._load_reduce,
        pickle.NEWOBJ[0]: _RestrictedUnpickler._load_newobj,
        pickle.NEWOBJ_EX[0]: _RestrictedUnpickler._load_newobj_ex,
        pickle.OBJ[0]: _RestrictedUnpickler._load_obj,
        pickle.INST[0]: _RestrictedUnpickler._load_inst,
        pickle.BUILD[0]: _RestrictedUnpickler._load_build,
        pickle.BINPERSID[0]: _RestrictedUnpickler._load_binpersid,
        **{op[0]: _update_guard(op) for op in (pickle.SETITEM, pickle.SETITEMS, pickle.APPEND)},
        **{op[0]: _update_guard(op) for op in (pickle.APPENDS, pickle.ADDITEMS)},
        **{op[0]: _RestrictedUnpickler._refuse_opcode for op in (pickle.EXT1, pickle.EXT2, pickle.EXT4)},
        pickle.PERSID[0]: _RestrictedUnpickler._refuse_opcode,
    }
)


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _pickle_module(max_storage_bytes: int) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler is :class:`_RestrictedUnpickler`."""
    unpickler = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"max_storage_bytes": max_storage_bytes})
    module = types.ModuleType("locdistill_restricted_pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda f, **kw: unpickler(f, **kw).load()  # type: ignore[attr-defined]
    module.loads = lambda b, **kw: unpickler(io.BytesIO(b), **kw).load()  # type: ignore[attr-defined]
    return module


def restricted_load(path: str | Path, max_storage_bytes: int = DEFAULT_MAX_STORAGE_BYTES) -> Any:
    """Load a torch checkpoint keeping tensors and plain data; see the module docstring.

    Raises:
        ValueError: naming ``path`` and what it is, when it is no torch checkpoint (see
            :func:`locdistill.weights.sniff.describe_unreadable`).
        UnsafeCheckpointError: naming ``path``, when the pickle does what a weights file never does or
            its tensors pass ``max_storage_bytes``.
    """
    problem = describe_unreadable(path)  # an LFS pointer, a text file, a raw pickle, a tar archive ...
    if problem is not None:
        raise ValueError(problem)
    module = _pickle_module(max_storage_bytes)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)  # type: ignore[arg-type]
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: refused to load: {e}") from None
