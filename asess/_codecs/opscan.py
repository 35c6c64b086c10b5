"""One pass over a pickle's opcodes, before the C unpickler runs: refuse what it trusts too far.

The C unpickler builds whatever the opcodes say, then hashes dict keys and
set members as it goes, and a few opcodes make it misbehave long before the
restricted unpickler's own checks could run on the loaded value:

- a memo index from PUT/BINPUT/LONG_BINPUT makes it grow its memo table to
  twice that index (LONG_BINPUT 0x7fffffff asks for 32 GiB); a real pickle
  memoizes at most one object per opcode, so an index past the data's length
  is forged;
- a truncated BYTEARRAY8 inside a FRAME makes CPython 3.11 free a bytearray it
  still exports; out-of-band buffers never belong in a cookie; a frame longer
  than what follows it is malformed;
- a tuple nested a million deep (1.4 kB once compressed) used as a dict key or
  set member makes ``hash()`` recurse in C until the stack overflows: SIGSEGV.

So the pass replays the opcodes on a model stack that holds each value's
nesting height (0 for a leaf, children + 1 for a container) and refuses any
value nested deeper than ``max_depth``. Immutable values (leaves, tuples,
frozensets) are plain ints; mutable ones (lists, dicts, sets, constructed
objects) are :class:`_Node` cells whose height grows as items are added. A
height could only be understated if a container were changed after another
container took it in, which needs a second reference (GET or DUP) to it:
pickles of acyclic data never do that, so changing a shared container is
refused (the restricted unpickler refuses cycles anyway), as is "changing" an
immutable value.
"""

from __future__ import annotations

import pickle
import pickletools

_LEAF, _MEMOIZE, _ADD_FROM_MARK, _MARK, _EMPTY_MUTABLE, _GET, _PUT, _TUPLE_N = range(8)
_EMPTY_TUPLE, _APPEND, _SETITEM, _FROM_MARK, _REDUCE, _BUILD, _FRAME, _STOP = range(8, 16)
_NOTHING, _OTHER = 16, 17
_GROUPS = {
    _LEAF: (
        "INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING "
        "BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 NONE NEWTRUE NEWFALSE UNICODE "
        "SHORT_BINUNICODE BINUNICODE BINUNICODE8 FLOAT BINFLOAT EXT1 EXT2 EXT4 GLOBAL PERSID"
    ),
    _MEMOIZE: "MEMOIZE",
    _ADD_FROM_MARK: "APPENDS SETITEMS ADDITEMS",
    _MARK: "MARK",
    _EMPTY_MUTABLE: "EMPTY_LIST EMPTY_DICT EMPTY_SET",
    _GET: "GET BINGET LONG_BINGET",
    _PUT: "PUT BINPUT LONG_BINPUT",
    _TUPLE_N: "TUPLE1 TUPLE2 TUPLE3",
    _EMPTY_TUPLE: "EMPTY_TUPLE",
    _APPEND: "APPEND",
    _SETITEM: "SETITEM",
    _FROM_MARK: "TUPLE FROZENSET LIST DICT",
    _REDUCE: "REDUCE NEWOBJ",
    _BUILD: "BUILD",
    _FRAME: "FRAME",
    _STOP: "STOP",
    _NOTHING: "PROTO",
}
_KINDS = {name: kind for kind, names in _GROUPS.items() for name in names.split()}
_TUPLE_SIZES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


class _Node:
    """A mutable value on the model stack: its height so far, and whether it is shared."""

    __slots__ = ("height", "shared")

    def __init__(self, height: int) -> None:
        self.height = height
        self.shared = False


_Value = int | _Node


def _height(value: _Value) -> int:
    return value if type(value) is int else value.height  # type: ignore[union-attr]


def _fail(message: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(message)


class _Model:
    """The model stack, mark stack and memo of one scan."""

    __slots__ = ("marks", "max_depth", "memo", "stack")

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Value] = {}

    def push(self, value: _Value) -> None:
        if _height(value) > self.max_depth:
            raise _fail(f"data nested more than {self.max_depth} levels deep")
        self.stack.append(value)

    def pop_mark(self) -> list[_Value]:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def grow(self, items_height: int) -> None:
        """The top value takes in items ``items_height`` high (APPEND, SETITEM, BUILD...)."""
        target = self.stack[-1]
        if type(target) is int:
            raise _fail("a pickle adds items to an immutable value")
        assert isinstance(target, _Node)
        if target.shared:
            raise _fail("data refers to itself (a container is filled after it was shared)")
        if items_height + 1 > target.height:
            target.height = items_height + 1
            if target.height > self.max_depth:
                raise _fail(f"data nested more than {self.max_depth} levels deep")


def _highest(items: list[_Value]) -> int:
    return max(map(_height, items), default=0)


def scan(data: bytes, max_depth: int) -> None:
    """Refuse ``data`` unless its opcodes are safe to hand to the C unpickler.

    Raises:
        pickle.UnpicklingError: a forged memo index, out-of-band buffers, an
            overlong frame, nesting deeper than ``max_depth``, or opcodes that
            do not form a pickle.
    """
    try:
        _replay(data, _Model(max_depth))
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # genops raises ValueError and others on malformed input
        raise _fail(f"malformed pickle ({type(exc).__name__}: {exc})") from exc


def _replay(data: bytes, model: _Model) -> None:
    limit, stack, memo, marks = len(data), model.stack, model.memo, model.marks
    # Branches in order of how often plain-data pickles use them.
    for opcode, arg, pos in pickletools.genops(data):
        kind = _KINDS.get(opcode.name, _OTHER)
        if kind == _LEAF:
            stack.append(0)
        elif kind == _MEMOIZE:
            memo[len(memo)] = stack[-1]
        elif kind == _ADD_FROM_MARK:
            model.grow(_highest(model.pop_mark()))
        elif kind == _MARK:
            marks.append(len(stack))
        elif kind == _EMPTY_MUTABLE:
            stack.append(_Node(1))
        elif kind == _GET:
            value = memo[arg]  # type: ignore[index]
            if type(value) is _Node:
                value.shared = True
            stack.append(value)
        elif kind == _PUT:
            if isinstance(arg, int) and arg > limit:
                raise _fail(f"{opcode.name} {arg} indexes past the pickle's length")
            memo[arg] = stack[-1]  # type: ignore[index]
        elif kind == _TUPLE_N:
            n = _TUPLE_SIZES[opcode.name]
            if len(stack) < n:
                raise _fail("stack underflow")
            items = stack[-n:]
            del stack[-n:]
            model.push(_highest(items) + 1)
        elif kind == _EMPTY_TUPLE:
            stack.append(1)
        elif kind == _APPEND:
            model.grow(_height(stack.pop()))
        elif kind == _SETITEM:
            model.grow(max(_height(stack.pop()), _height(stack.pop())))
        elif kind == _FROM_MARK:
            height = _highest(model.pop_mark()) + 1
            model.push(_Node(height) if opcode.name in ("LIST", "DICT") else height)
        elif kind == _REDUCE:
            args, func = stack.pop(), stack.pop()
            # The result holds what the argument tuple holds: one level less.
            model.push(_Node(max(_height(func), _height(args) - 1)))
        elif kind == _BUILD:
            model.grow(_height(stack.pop()) - 1)
        elif kind == _FRAME:
            if isinstance(arg, int) and (pos or 0) + 9 + arg > limit:
                raise _fail("a pickle frame runs past the end of the data")
        elif kind == _STOP:
            stack.pop()
        elif kind == _NOTHING:
            pass
        else:
            _rare(model, opcode.name)


def _rare(model: _Model, name: str) -> None:
    stack = model.stack
    if name == "NEWOBJ_EX":
        kwargs, args, cls = stack.pop(), stack.pop(), stack.pop()
        model.push(_Node(max(_height(cls), _height(args) - 1, _height(kwargs) - 1)))
    elif name in ("INST", "OBJ"):
        model.push(_Node(_highest(model.pop_mark())))
    elif name == "STACK_GLOBAL":
        stack.pop()
        stack[-1] = 0
    elif name == "BINPERSID":
        stack[-1] = 0
    elif name == "DUP":
        top = stack[-1]
        if type(top) is _Node:
            top.shared = True
        stack.append(top)
    elif name == "POP":
        if model.marks and model.marks[-1] == len(stack):
            model.marks.pop()  # as the C unpickler does: POP at a mark drops the mark
        else:
            stack.pop()
    elif name == "POP_MARK":
        model.pop_mark()
    elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
        raise _fail(f"{name} is not admitted in session data")
    else:
        raise _fail(f"opcode {name} is not admitted")
