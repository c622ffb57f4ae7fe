"""Subscription rule filters and actions for the local Service Bus emulator.

Implements, in-process and with the standard library only, the rule language Azure
Service Bus documents in "Subscription Rule SQL Filter Syntax", "Subscription Rule SQL
Action Syntax" and "Topic filters and actions" (correlation filters), plus the rule
object shape of Microsoft's Service Bus emulator ``Config.json``::

    {"Name": "r1", "Properties": {"FilterType": "Correlation",
        "CorrelationFilter": {"CorrelationId": "id1", "Label": "subject1",
                              "Properties": {"prop3": "value3"}}}}
    {"Name": "r2", "Properties": {"FilterType": "Sql",
        "SqlFilter": {"SqlExpression": "sys.MessageId = '123' AND userProp1 = 'value1'"},
        "Action": {"SqlExpression": "SET sys.To = 'Entity'"}}}

Expressions are parsed once into closures; evaluating a filter costs a few closure calls.

Supported SQL (filters)
-----------------------
* Properties: ``sys.<Name>`` for system properties, ``user.<name>`` or a bare name for
  application properties, ``[delimited name]`` (``]]`` escapes ``]``) and
  ``"quoted name"`` (``""`` escapes ``"``). Property names are case-insensitive, as the
  Azure docs state (an exact-case application property wins if several differ only by
  case). Keywords and function names are case-insensitive. Known system properties:
  MessageId, CorrelationId, Label (alias Subject), To, ReplyTo, SessionId,
  ReplyToSessionId, ContentType, PartitionKey, ViaPartitionKey, SequenceNumber,
  EnqueuedSequenceNumber, EnqueuedTimeUtc, ExpiresAtUtc, ScheduledEnqueueTimeUtc,
  TimeToLive, DeliveryCount, Size, LockToken, LockedUntilUtc, DeadLetterSource, State,
  ForcePersistence. Any other ``sys.`` name is rejected when the rule is compiled (Azure
  reports a non-existent system property as an error).
* Literals: ``'strings'`` with ``''`` escaping, 64-bit integers, decimals (``2.0``,
  stored as float), scientific notation (``101.5E5``), ``TRUE``, ``FALSE``, ``NULL``.
* Operators: ``= <> != > >= < <=``; ``+ - * / %`` and unary ``+ -``; ``AND OR NOT`` with
  SQL precedence (NOT > AND > OR) and parentheses; ``[NOT] IN (expr, ...)``;
  ``[NOT] LIKE pattern [ESCAPE 'c']`` with ``%`` and ``_``; ``<property> IS [NOT] NULL``;
  ``EXISTS(<property>)``; functions ``newid()``, ``property(name)`` and ``p(name)``
  (``name`` is any string expression, optionally prefixed ``sys.``/``user.``).
* Three-valued logic as documented: a missing property or NULL is *unknown*; arithmetic,
  comparison and LIKE with an unknown operand are unknown, ``IN`` is unknown when its
  left operand is; AND/OR/NOT follow the documented truth tables; a filter matches only
  when the whole predicate is TRUE. ``IS NULL`` is true for a missing or null property.
* Types follow C# binding: int and float compare and compute together (int promoted);
  ``int / int`` truncates toward zero, ``%`` takes the dividend's sign, integer overflow
  wraps at 64 bits, float division by zero gives +/-inf or NaN, integer division by zero
  is unknown. Strings compare ordinally and case-sensitively (``=``, ``LIKE``, and, as an
  emulator choice, ``< <= > >=``); ``+`` concatenates two strings; datetimes and
  timedeltas support comparison and ``dt - dt``, ``dt +/- td``, ``td +/- td``. Booleans,
  GUIDs and bytes support only ``=``/``<>``. Comparing or combining incompatible types
  (e.g. ``'10' = 10``, ``TRUE = 1``) never raises: the result is unknown.

Supported SQL (actions)
-----------------------
``SET <property> = <expression>`` and ``REMOVE <property>``, several statements separated
by optional ``;``, run in order on the message copy (later statements see earlier
changes). ``SET`` of an application property replaces it (an existing property differing
only in case is overwritten); an int assigned over an existing float is stored as float;
an unknown result stores NULL. ``SET``/``REMOVE`` of a system property is allowed for
MessageId, CorrelationId, Label/Subject, To, ReplyTo, SessionId, ReplyToSessionId,
ContentType, PartitionKey, ViaPartitionKey, TimeToLive, ScheduledEnqueueTimeUtc and
ForcePersistence (other system properties are read-only and rejected at compile time);
NULL or REMOVE clears it, a GUID assigned to a string property is stored as its string,
and a value of the wrong type leaves the property unchanged.

Not supported
-------------
Not supported: SQL filter parameters (``@name``, i.e. ``SqlFilter.Parameters``, which
Config.json cannot supply); the JMS message-selector dialect of Service Bus Premium (e.g.
``BETWEEN``, JMS header names); functions other than ``newid()``, ``property(name)`` and
``p(name)``; ``CASE``, ``CAST``/``CONVERT``, date/time or GUID literals, T-SQL ``LIKE``
character classes (``[a-z]`` is matched literally), comments and ``==``; a bare value used
as a condition (``TRUE``, ``flag``, ``NOT flag``; Azure's grammar requires a comparison, so
write ``flag = TRUE``); ``IS [NOT] NULL`` on anything but a property reference; implicit
string/number conversion (``'5' = 5`` is unknown, not true); regular identifiers starting
with ``_`` or a digit and the reserved words AND OR NOT IN LIKE ESCAPE IS NULL TRUE FALSE
EXISTS SET REMOVE used as bare property names (write them as ``[name]``); system
properties other than those listed above. ``NULL`` items inside an ``IN (...)`` list never
match, so ``x NOT IN (1, NULL)`` is TRUE for ``x = 2``.

Correlation filters
-------------------
``CorrelationId``, ``MessageId``, ``To``, ``ReplyTo``, ``Label`` (or ``Subject``),
``SessionId``, ``ReplyToSessionId``, ``ContentType`` and ``Properties`` (application
properties); every given condition must match (logical AND), string comparison is
case-sensitive, numbers compare with int/float promotion, a missing property never
matches, and a ``null`` value in ``Properties`` matches a missing or null property.

Errors
------
Every malformed expression or rule raises :class:`FilterError` (a ``ValueError``) at
compile time, with a one-line message naming the problem and its 1-based character
position. Evaluation never raises: an evaluation problem makes that sub-expression
unknown, so the filter does not match.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "FALSE_FILTER",
    "SYSTEM_PROPERTIES",
    "TRUE_FILTER",
    "Action",
    "FilterError",
    "MessageView",
    "Predicate",
    "compile_correlation_filter",
    "compile_rule",
    "compile_sql_action",
    "compile_sql_filter",
]


class FilterError(ValueError):
    """A malformed filter, action or rule; the message is one line and says where."""

    def __init__(self, message: str, *, position: int | None = None, expression: str | None = None):
        super().__init__(message)
        self.position = position  # 1-based character position, when known
        self.expression = expression


@dataclass
class MessageView:
    """The properties a rule can see and change.

    ``system`` holds system properties under their Service Bus SQL names ("MessageId",
    "Label" or "Subject", "To", ...); ``user`` holds application properties. A missing key
    means the property is absent (evaluated as NULL/unknown).
    """

    system: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)


Predicate = Callable[[MessageView], bool]
Action = Callable[[MessageView], None]


def TRUE_FILTER(view: MessageView) -> bool:  # noqa: N802 - public constant-like name
    """The default ``1=1`` rule: matches every message."""
    return True


def FALSE_FILTER(view: MessageView) -> bool:  # noqa: N802
    """The ``1=0`` rule: matches nothing."""
    return False


# --------------------------------------------------------------------------- system properties

_STRING_SYS = (
    "MessageId",
    "CorrelationId",
    "Label",
    "To",
    "ReplyTo",
    "SessionId",
    "ReplyToSessionId",
    "ContentType",
    "PartitionKey",
    "ViaPartitionKey",
    "DeadLetterSource",
)
_OTHER_SYS = (
    "SequenceNumber",
    "EnqueuedSequenceNumber",
    "EnqueuedTimeUtc",
    "ExpiresAtUtc",
    "ScheduledEnqueueTimeUtc",
    "TimeToLive",
    "DeliveryCount",
    "Size",
    "LockToken",
    "LockedUntilUtc",
    "State",
    "ForcePersistence",
)
#: Canonical names of the system properties ``sys.`` may reference.
SYSTEM_PROPERTIES: frozenset[str] = frozenset(_STRING_SYS + _OTHER_SYS)
_SYS_BY_LOWER = {n.lower(): n for n in SYSTEM_PROPERTIES}
_SYS_BY_LOWER["subject"] = "Label"
# Keys under which a canonical system property may be stored in MessageView.system.
_SYS_KEYS = {n: (n,) for n in SYSTEM_PROPERTIES}
_SYS_KEYS["Label"] = ("Label", "Subject")
_STRING_SYS_SET = frozenset(_STRING_SYS)
# Writable system properties and the Python type a SET must produce.
_SETTABLE_SYS: dict[str, tuple[type, ...]] = {
    "MessageId": (str,),
    "CorrelationId": (str,),
    "Label": (str,),
    "To": (str,),
    "ReplyTo": (str,),
    "SessionId": (str,),
    "ReplyToSessionId": (str,),
    "ContentType": (str,),
    "PartitionKey": (str,),
    "ViaPartitionKey": (str,),
    "TimeToLive": (timedelta,),
    "ScheduledEnqueueTimeUtc": (datetime,),
    "ForcePersistence": (bool,),
}

_MISSING = object()
_NOCONST = object()
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _sys_getter(canon: str) -> Callable[[MessageView], Any]:
    keys = _SYS_KEYS[canon]
    if canon in _STRING_SYS_SET:
        if len(keys) == 2:
            k0, k1 = keys

            def get(view: MessageView) -> Any:
                s = view.system
                v = s.get(k0)
                if v is None:
                    v = s.get(k1)
                if v.__class__ is uuid.UUID:
                    return str(v)
                return v

            return get
        (k0,) = keys

        def get(view: MessageView) -> Any:
            v = view.system.get(k0)
            if v.__class__ is uuid.UUID:
                return str(v)
            return v

        return get
    (k0,) = keys

    def get(view: MessageView) -> Any:
        return view.system.get(k0)

    return get


def _sys_exists(canon: str) -> Callable[[MessageView], bool]:
    keys = _SYS_KEYS[canon]

    def exists(view: MessageView) -> bool:
        s = view.system
        return any(k in s for k in keys)

    return exists


def _find_user_key(user: Mapping[str, Any], name: str) -> Any:
    """The key of ``user`` that ``name`` refers to (exact case first), or _MISSING."""
    if name in user:
        return name
    lname = name.lower()
    for k in user:
        if isinstance(k, str) and k.lower() == lname:
            return k
    return _MISSING


def _user_getter(name: str) -> Callable[[MessageView], Any]:
    lname = name.lower()

    def get(view: MessageView) -> Any:
        u = view.user
        v = u.get(name, _MISSING)
        if v is _MISSING:
            for k, val in u.items():
                if isinstance(k, str) and k.lower() == lname:
                    return val
            return None
        return v

    return get


def _user_exists(name: str) -> Callable[[MessageView], bool]:
    def exists(view: MessageView) -> bool:
        return _find_user_key(view.user, name) is not _MISSING

    return exists


# --------------------------------------------------------------------------- value semantics

_GROUP_BY_TYPE: dict[type, str] = {
    bool: "bool",
    int: "num",
    float: "num",
    Decimal: "num",
    str: "str",
    datetime: "dt",
    date: "date",
    timedelta: "td",
    uuid.UUID: "uuid",
    bytes: "bin",
    bytearray: "bin",
}
_GROUP_FALLBACK: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "num"),
    (float, "num"),
    (Decimal, "num"),
    (str, "str"),
    (datetime, "dt"),
    (date, "date"),
    (timedelta, "td"),
    (uuid.UUID, "uuid"),
    (bytes, "bin"),
    (bytearray, "bin"),
)
_ORDERED_GROUPS = frozenset({"num", "str", "dt", "date", "td"})


def _group(v: Any) -> str | None:
    g = _GROUP_BY_TYPE.get(v.__class__)
    if g is None:
        for t, gg in _GROUP_FALLBACK:
            if isinstance(v, t):
                return gg
    return g


def _wrap64(x: int) -> int:
    if _INT64_MIN <= x <= _INT64_MAX:
        return x
    return ((x - _INT64_MIN) % (1 << 64)) + _INT64_MIN


def _equals(a: Any, b: Any) -> bool | None:
    """SQL ``=``: None when either side is NULL or the types are incompatible."""
    if a is None or b is None:
        return None
    ga = _group(a)
    if ga is None or ga != _group(b):
        return None
    try:
        return bool(a == b)
    except (TypeError, ValueError, ArithmeticError):
        return None


_CMP_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _make_compare(op: str, lf: Callable, rf: Callable) -> Callable[[MessageView], bool | None]:
    opfn = _CMP_OPS[op]
    ordering = op in ("<", "<=", ">", ">=")

    def compare(view: MessageView) -> bool | None:
        a = lf(view)
        if a is None:
            return None
        b = rf(view)
        if b is None:
            return None
        ca = a.__class__
        if ca is b.__class__ and (ca is str or ca is int or ca is float):
            return opfn(a, b)
        ga = _group(a)
        if ga is None or ga != _group(b) or (ordering and ga not in _ORDERED_GROUPS):
            return None
        try:
            return bool(opfn(a, b))
        except (TypeError, ValueError, ArithmeticError):  # e.g. naive vs aware datetimes
            return None

    return compare


def _idiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _fdiv(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _arith_add(a: Any, b: Any) -> Any:
    ga, gb = _group(a), _group(b)
    if ga == "num" and gb == "num":
        r = a + b
        return _wrap64(r) if r.__class__ is int else r
    if ga == "str" and gb == "str":
        return a + b
    if (ga == "dt" and gb == "td") or (ga == "td" and gb in ("dt", "td")):
        return a + b
    return None


def _arith_sub(a: Any, b: Any) -> Any:
    ga, gb = _group(a), _group(b)
    if ga == "num" and gb == "num":
        r = a - b
        return _wrap64(r) if r.__class__ is int else r
    if (ga == "dt" and gb in ("dt", "td")) or (ga == "td" and gb == "td"):
        return a - b
    return None


def _arith_mul(a: Any, b: Any) -> Any:
    if _group(a) == "num" and _group(b) == "num":
        r = a * b
        return _wrap64(r) if r.__class__ is int else r
    return None


def _arith_div(a: Any, b: Any) -> Any:
    if _group(a) != "num" or _group(b) != "num":
        return None
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            return None  # C# DivideByZeroException
        return _wrap64(_idiv(a, b))
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return None if b == 0 else a / b
    return _fdiv(float(a), float(b))


def _arith_mod(a: Any, b: Any) -> Any:
    if _group(a) != "num" or _group(b) != "num":
        return None
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            return None
        return a - b * _idiv(a, b)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return None if b == 0 else a % b  # Decimal % already takes the dividend's sign
    fa, fb = float(a), float(b)
    if fb == 0:
        return math.nan
    return math.fmod(fa, fb)


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": _arith_add,
    "-": _arith_sub,
    "*": _arith_mul,
    "/": _arith_div,
    "%": _arith_mod,
}


def _make_arith(op: str, lf: Callable, rf: Callable) -> Callable[[MessageView], Any]:
    impl = _ARITH[op]

    def arith(view: MessageView) -> Any:
        a = lf(view)
        if a is None:
            return None
        b = rf(view)
        if b is None:
            return None
        try:
            return impl(a, b)
        except (TypeError, ValueError, ArithmeticError):
            return None

    return arith


def _negate(a: Any) -> Any:
    g = _group(a)
    if g == "num":
        return _wrap64(-a) if a.__class__ is int else -a
    if g == "td":
        try:
            return -a
        except OverflowError:
            return None
    return None


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """Translate a LIKE pattern; raises ValueError for a dangling escape character."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if escape is not None and ch == escape:
            i += 1
            if i >= n:
                raise ValueError("the LIKE pattern ends with its escape character")
            out.append(re.escape(pattern[i]))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@lru_cache(maxsize=512)
def _like_regex_cached(pattern: str, escape: str | None) -> re.Pattern[str] | None:
    try:
        return _like_regex(pattern, escape)
    except ValueError:
        return None


# --------------------------------------------------------------------------- tokenizer

_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE", "EXISTS", "SET", "REMOVE"}
)
_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TWO_CHAR_OPS = ("<>", "!=", ">=", "<=")
_ONE_CHAR_OPS = frozenset("=<>+-*/%(),.;")


class _Tok(NamedTuple):
    kind: str  # int float str ident qident kw op eof
    value: Any
    pos: int  # 0-based offset


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of expression"
    if tok.kind == "str":
        return "string " + repr(tok.value)
    if tok.kind in ("int", "float"):
        return "number " + str(tok.value)
    if tok.kind == "kw":
        return "keyword " + tok.value
    if tok.kind == "qident":
        return "name " + repr(tok.value)
    return repr(tok.value)


def _shown(text: str) -> str:
    s = text if len(text) <= 160 else text[:157] + "..."
    return repr(s)


class _Lexer:
    def __init__(self, text: str, what: str):
        self.text = text
        self.what = what

    def error(self, message: str, pos: int) -> FilterError:
        return FilterError(
            f"invalid {self.what}: {message} at position {pos + 1} in {_shown(self.text)}",
            position=pos + 1,
            expression=self.text,
        )

    def tokens(self) -> list[_Tok]:
        text = self.text
        n = len(text)
        i = 0
        out: list[_Tok] = []
        while i < n:
            ch = text[i]
            if ch.isspace():
                i += 1
                continue
            if ch.isdecimal() or (ch == "." and i + 1 < n and text[i + 1].isdecimal()):
                m = _NUMBER_RE.match(text, i)
                if m is None:  # pragma: no cover - guarded by the condition above
                    raise self.error("malformed number", i)
                end = m.end()
                if end < n and (text[end].isalpha() or text[end] == "_" or text[end].isdecimal()):
                    raise self.error(f"malformed number {text[i:end + 1]!r}", i)
                lit = m.group(0)
                if any(c in lit for c in ".eE"):
                    val = float(lit)
                    if math.isinf(val):
                        raise self.error(f"number {lit} is out of range", i)
                    out.append(_Tok("float", val, i))
                else:
                    out.append(_Tok("int", int(lit), i))
                i = end
                continue
            if ch.isalpha():
                j = i + 1
                while j < n and (text[j].isalpha() or text[j].isdecimal() or text[j] == "_"):
                    j += 1
                word = text[i:j]
                upper = word.upper()
                if upper in _KEYWORDS:
                    out.append(_Tok("kw", upper, i))
                else:
                    out.append(_Tok("ident", word, i))
                i = j
                continue
            if ch == "_":
                raise self.error("a name cannot start with '_' (write it as [name])", i)
            if ch == "'" or ch == '"' or ch == "[":
                close = "]" if ch == "[" else ch
                j = i + 1
                buf: list[str] = []
                while True:
                    if j >= n:
                        what = "string" if ch == "'" else "name"
                        raise self.error(f"unterminated {what} (no closing {close})", i)
                    c = text[j]
                    if c == close:
                        if j + 1 < n and text[j + 1] == close:
                            buf.append(close)
                            j += 2
                            continue
                        j += 1
                        break
                    buf.append(c)
                    j += 1
                value = "".join(buf)
                if ch == "'":
                    out.append(_Tok("str", value, i))
                else:
                    if not value:
                        raise self.error("empty property name", i)
                    out.append(_Tok("qident", value, i))
                i = j
                continue
            if ch == "@":
                raise self.error("SQL parameters (@name) are not supported", i)
            two = text[i : i + 2]
            if two in _TWO_CHAR_OPS:
                out.append(_Tok("op", two, i))
                i += 2
                continue
            if two == "==":
                raise self.error("'==' is not an operator (use '=')", i)
            if ch in _ONE_CHAR_OPS:
                out.append(_Tok("op", ch, i))
                i += 1
                continue
            raise self.error(f"unexpected character {ch!r}", i)
        out.append(_Tok("eof", None, n))
        return out


# --------------------------------------------------------------------------- parser / compiler


class _Node:
    """A compiled sub-expression: ``kind`` is "val" (a value) or "pred" (true/false/unknown)."""

    __slots__ = ("const", "fn", "kind", "pos", "prop")

    def __init__(self, kind: str, fn: Callable, pos: int, prop: tuple[str, str] | None = None,
                 const: Any = _NOCONST):
        self.kind = kind
        self.fn = fn
        self.pos = pos
        self.prop = prop  # ("sys", canonical) or ("user", name) for a bare property reference
        self.const = const


def _const_node(value: Any, pos: int) -> _Node:
    return _Node("val", lambda view: value, pos, const=value)


_FUNCTIONS = ("newid", "property", "p")


class _Parser:
    def __init__(self, text: str, what: str):
        self.lexer = _Lexer(text, what)
        self.toks = self.lexer.tokens()
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def error(self, message: str, pos: int) -> FilterError:
        return self.lexer.error(message, pos)

    def is_op(self, value: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "op" and t.value == value

    def is_kw(self, value: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "kw" and t.value == value

    def expect_op(self, value: str, context: str) -> _Tok:
        t = self.tok
        if t.kind != "op" or t.value != value:
            raise self.error(f"expected '{value}' {context}, found {_describe(t)}", t.pos)
        return self.advance()

    def unexpected(self, expected: str) -> FilterError:
        t = self.tok
        return self.error(f"expected {expected}, found {_describe(t)}", t.pos)

    def need_value(self, node: _Node, context: str) -> _Node:
        if node.kind != "val":
            raise self.error(f"expected a value {context}, found a condition", node.pos)
        return node

    def need_pred(self, node: _Node, context: str) -> _Node:
        if node.kind != "pred":
            raise self.error(
                f"expected a condition {context} (a comparison, IN, LIKE, IS NULL or EXISTS), "
                "found a plain value",
                node.pos,
            )
        return node

    # -- grammar
    def parse_condition(self) -> _Node:
        """OR-level: the whole filter (or a parenthesised group)."""
        first = self.parse_and()
        if not self.is_kw("OR"):
            return first
        nodes = [self.need_pred(first, "before OR")]
        while self.is_kw("OR"):
            self.advance()
            nodes.append(self.need_pred(self.parse_and(), "after OR"))
        fns = tuple(n.fn for n in nodes)
        if len(fns) == 2:
            lf, rf = fns

            def or2(view: MessageView) -> bool | None:
                a = lf(view)
                if a is True:
                    return True
                b = rf(view)
                if b is True:
                    return True
                if a is False and b is False:
                    return False
                return None

            return _Node("pred", or2, first.pos)

        def orn(view: MessageView) -> bool | None:
            unknown = False
            for f in fns:
                r = f(view)
                if r is True:
                    return True
                if r is None:
                    unknown = True
            return None if unknown else False

        return _Node("pred", orn, first.pos)

    def parse_and(self) -> _Node:
        first = self.parse_not()
        if not self.is_kw("AND"):
            return first
        nodes = [self.need_pred(first, "before AND")]
        while self.is_kw("AND"):
            self.advance()
            nodes.append(self.need_pred(self.parse_not(), "after AND"))
        fns = tuple(n.fn for n in nodes)
        if len(fns) == 2:
            lf, rf = fns

            def and2(view: MessageView) -> bool | None:
                a = lf(view)
                if a is False:
                    return False
                b = rf(view)
                if b is False:
                    return False
                if a is True and b is True:
                    return True
                return None

            return _Node("pred", and2, first.pos)

        def andn(view: MessageView) -> bool | None:
            unknown = False
            for f in fns:
                r = f(view)
                if r is False:
                    return False
                if r is None:
                    unknown = True
            return None if unknown else True

        return _Node("pred", andn, first.pos)

    def parse_not(self) -> _Node:
        if self.is_kw("NOT"):
            t = self.advance()
            inner = self.need_pred(self.parse_not(), "after NOT").fn

            def not_(view: MessageView) -> bool | None:
                r = inner(view)
                return None if r is None else not r

            return _Node("pred", not_, t.pos)
        return self.parse_predicate()

    def parse_predicate(self) -> _Node:
        t = self.tok
        if t.kind == "kw" and t.value == "EXISTS":
            self.advance()
            self.expect_op("(", "after EXISTS")
            prop = self.parse_property_ref("inside EXISTS(...)")
            self.expect_op(")", "to close EXISTS(")
            scope, name = prop
            fn = _sys_exists(name) if scope == "sys" else _user_exists(name)
            return _Node("pred", fn, t.pos)
        left = self.parse_additive()
        t = self.tok
        if t.kind == "op" and t.value in _CMP_OPS:
            self.advance()
            self.need_value(left, f"before '{t.value}'")
            right = self.need_value(self.parse_additive(), f"after '{t.value}'")
            return _Node("pred", _make_compare(t.value, left.fn, right.fn), left.pos)
        negate = False
        if t.kind == "kw" and t.value == "NOT" and self.peek().kind == "kw" and self.peek().value in (
            "IN",
            "LIKE",
        ):
            negate = True
            self.advance()
            t = self.tok
        if t.kind == "kw" and t.value == "IN":
            self.advance()
            self.need_value(left, "before IN")
            return self.finish_in(left, negate)
        if t.kind == "kw" and t.value == "LIKE":
            self.advance()
            self.need_value(left, "before LIKE")
            return self.finish_like(left, negate)
        if t.kind == "kw" and t.value == "IS":
            self.advance()
            if left.prop is None:
                raise self.error("IS [NOT] NULL needs a property name on its left", left.pos)
            is_not = False
            if self.is_kw("NOT"):
                self.advance()
                is_not = True
            if not self.is_kw("NULL"):
                raise self.unexpected("NULL after IS" + (" NOT" if is_not else ""))
            self.advance()
            get = left.fn
            if is_not:
                return _Node("pred", lambda view: get(view) is not None, left.pos)
            return _Node("pred", lambda view: get(view) is None, left.pos)
        return left

    def finish_in(self, left: _Node, negate: bool) -> _Node:
        self.expect_op("(", "after IN")
        items: list[_Node] = []
        while True:
            if self.is_op(")") and not items:
                raise self.unexpected("at least one value in IN (...)")
            items.append(self.need_value(self.parse_additive(), "in IN (...)"))
            if self.is_op(","):
                self.advance()
                continue
            self.expect_op(")", "to close IN (...)")
            break
        lf = left.fn
        consts = [n.const for n in items]
        if all(c is not _NOCONST for c in consts):
            str_set = frozenset(c for c in consts if c.__class__ is str)
            others = tuple(c for c in consts if c is not None and c.__class__ is not str)

            def contains(view: MessageView) -> bool | None:
                a = lf(view)
                if a is None:
                    return None
                if a.__class__ is str or isinstance(a, str):
                    return a in str_set
                for c in others:
                    if _equals(a, c) is True:
                        return True
                return False

        else:
            item_fns = tuple(n.fn for n in items)

            def contains(view: MessageView) -> bool | None:
                a = lf(view)
                if a is None:
                    return None
                for f in item_fns:
                    if _equals(a, f(view)) is True:
                        return True
                return False

        if negate:

            def not_in(view: MessageView) -> bool | None:
                r = contains(view)
                return None if r is None else not r

            return _Node("pred", not_in, left.pos)
        return _Node("pred", contains, left.pos)

    def finish_like(self, left: _Node, negate: bool) -> _Node:
        pattern = self.need_value(self.parse_additive(), "as the LIKE pattern")
        escape: _Node | None = None
        if self.is_kw("ESCAPE"):
            self.advance()
            escape = self.need_value(self.parse_additive(), "after ESCAPE")
        lf = left.fn
        if escape is not None and escape.const is not _NOCONST:
            ec = escape.const
            if ec is not None and (not isinstance(ec, str) or len(ec) != 1):
                raise self.error("the ESCAPE value must be a string of exactly one character", escape.pos)
        const_pattern = pattern.const is not _NOCONST and (escape is None or escape.const is not _NOCONST)
        if const_pattern:
            pc = pattern.const
            ec = None if escape is None else escape.const
            if pc is None or (escape is not None and ec is None):

                def like(view: MessageView) -> bool | None:
                    return None

            else:
                if not isinstance(pc, str):
                    raise self.error("the LIKE pattern must be a string", pattern.pos)
                try:
                    rx = _like_regex(pc, ec)
                except ValueError as exc:
                    raise self.error(str(exc), pattern.pos) from None
                match = rx.fullmatch

                def like(view: MessageView) -> bool | None:
                    a = lf(view)
                    if a is None:
                        return None
                    if not isinstance(a, str):
                        return None
                    return match(a) is not None

        else:
            pf = pattern.fn
            ef = escape.fn if escape is not None else None

            def like(view: MessageView) -> bool | None:
                a = lf(view)
                if a is None or not isinstance(a, str):
                    return None
                p = pf(view)
                if not isinstance(p, str):
                    return None
                e = None
                if ef is not None:
                    e = ef(view)
                    if not isinstance(e, str) or len(e) != 1:
                        return None
                rx = _like_regex_cached(p, e)
                if rx is None:
                    return None
                return rx.fullmatch(a) is not None

        if negate:

            def not_like(view: MessageView) -> bool | None:
                r = like(view)
                return None if r is None else not r

            return _Node("pred", not_like, left.pos)
        return _Node("pred", like, left.pos)

    def parse_additive(self) -> _Node:
        node = self.parse_multiplicative()
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            op = self.advance().value
            self.need_value(node, f"before '{op}'")
            right = self.need_value(self.parse_multiplicative(), f"after '{op}'")
            node = _Node("val", _make_arith(op, node.fn, right.fn), node.pos)
        return node

    def parse_multiplicative(self) -> _Node:
        node = self.parse_unary()
        while self.tok.kind == "op" and self.tok.value in ("*", "/", "%"):
            op = self.advance().value
            self.need_value(node, f"before '{op}'")
            right = self.need_value(self.parse_unary(), f"after '{op}'")
            node = _Node("val", _make_arith(op, node.fn, right.fn), node.pos)
        return node

    def parse_unary(self) -> _Node:
        t = self.tok
        if t.kind == "op" and t.value in ("+", "-"):
            self.advance()
            nxt = self.tok
            if t.value == "-" and nxt.kind == "int":
                self.advance()
                value = -nxt.value
                if value < _INT64_MIN:
                    raise self.error(f"integer -{nxt.value} is out of the 64-bit range", t.pos)
                return _const_node(value, t.pos)
            operand = self.need_value(self.parse_unary(), f"after unary '{t.value}'")
            if operand.const is not _NOCONST:
                c = operand.const
                if c is not None and _group(c) not in ("num", "td"):
                    raise self.error(f"unary '{t.value}' needs a number", t.pos)
                value = c if (c is None or t.value == "+") else _negate(c)
                return _const_node(value, t.pos)
            of = operand.fn
            if t.value == "-":

                def neg(view: MessageView) -> Any:
                    a = of(view)
                    return None if a is None else _negate(a)

                return _Node("val", neg, t.pos)

            def pos_(view: MessageView) -> Any:
                a = of(view)
                return a if _group(a) in ("num", "td") else None

            return _Node("val", pos_, t.pos)
        return self.parse_primary()

    def parse_primary(self) -> _Node:
        t = self.tok
        k = t.kind
        if k == "int":
            self.advance()
            if t.value > _INT64_MAX:
                raise self.error(f"integer {t.value} is out of the 64-bit range", t.pos)
            return _const_node(t.value, t.pos)
        if k in ("float", "str"):
            self.advance()
            return _const_node(t.value, t.pos)
        if k == "kw":
            if t.value in ("TRUE", "FALSE", "NULL"):
                self.advance()
                return _const_node({"TRUE": True, "FALSE": False, "NULL": None}[t.value], t.pos)
            raise self.error(f"unexpected keyword {t.value} (reserved words as names need [brackets])", t.pos)
        if k == "op" and t.value == "(":
            self.advance()
            inner = self.parse_condition()
            self.expect_op(")", "to close '('")
            # a parenthesised value stays a value (its property-ness does not survive)
            return _Node(inner.kind, inner.fn, t.pos, const=inner.const)
        if k == "ident" and self.peek().kind == "op" and self.peek().value == "(":
            return self.parse_function()
        if k in ("ident", "qident"):
            scope, name = self.parse_property_ref("")
            fn = _sys_getter(name) if scope == "sys" else _user_getter(name)
            return _Node("val", fn, t.pos, prop=(scope, name))
        raise self.unexpected("a value")

    def parse_property_ref(self, context: str) -> tuple[str, str]:
        """``[sys.|user.]name`` -> ("sys", canonical) or ("user", name)."""
        t = self.tok
        where = f" {context}" if context else ""
        if t.kind not in ("ident", "qident"):
            raise self.unexpected(f"a property name{where}")
        self.advance()
        if t.kind == "ident" and t.value.lower() in ("sys", "user") and self.is_op("."):
            self.advance()
            nt = self.tok
            if nt.kind not in ("ident", "qident", "kw"):
                raise self.unexpected(f"a property name after '{t.value}.'")
            self.advance()
            name = nt.value if nt.kind != "kw" else self.lexer.text[nt.pos : nt.pos + len(nt.value)]
            if t.value.lower() == "user":
                return ("user", name)
            canon = _SYS_BY_LOWER.get(name.lower())
            if canon is None:
                raise self.error(f"unknown system property 'sys.{name}'", nt.pos)
            return ("sys", canon)
        if self.is_op("."):
            raise self.error(
                f"unknown scope '{t.value}' (only sys. and user. are scopes; use [a.b] for dotted names)",
                t.pos,
            )
        return ("user", t.value)

    def parse_function(self) -> _Node:
        t = self.advance()
        fname = t.value.lower()
        if fname not in _FUNCTIONS:
            raise self.error(f"unknown function '{t.value}' (supported: newid(), property(name), p(name))",
                             t.pos)
        self.expect_op("(", f"after {t.value}")
        if fname == "newid":
            self.expect_op(")", "after newid(")
            return _Node("val", lambda view: uuid.uuid4(), t.pos)
        arg = self.need_value(self.parse_additive(), f"as the argument of {t.value}()")
        self.expect_op(")", f"to close {t.value}(")
        if arg.const is not _NOCONST:
            if not isinstance(arg.const, str):
                raise self.error(f"{t.value}() needs a property name string", arg.pos)
            getter = _dynamic_getter(arg.const)
            if getter is None:
                raise self.error(f"unknown system property {arg.const!r}", arg.pos)
            return _Node("val", getter, t.pos)
        af = arg.fn

        def prop_fn(view: MessageView) -> Any:
            name = af(view)
            if not isinstance(name, str):
                return None
            getter = _dynamic_getter(name)
            return None if getter is None else getter(view)

        return _Node("val", prop_fn, t.pos)

    def expect_eof(self) -> None:
        if self.tok.kind != "eof":
            t = self.tok
            raise self.error(f"unexpected {_describe(t)}", t.pos)


@lru_cache(maxsize=1024)
def _dynamic_getter(name: str) -> Callable[[MessageView], Any] | None:
    """Getter for ``property(name)``: 'sys.X', 'user.x' or a bare application property."""
    lower = name.lower()
    if lower.startswith("sys."):
        canon = _SYS_BY_LOWER.get(lower[4:])
        return None if canon is None else _sys_getter(canon)
    if lower.startswith("user."):
        return _user_getter(name[5:])
    return _user_getter(name)


# --------------------------------------------------------------------------- public: filters


@lru_cache(maxsize=2048)
def _compile_sql_filter(expression: str) -> Predicate:
    p = _Parser(expression, "SQL filter")
    if p.tok.kind == "eof":
        raise p.error("the expression is empty", 0)
    node = p.parse_condition()
    p.expect_eof()
    p.need_pred(node, "as the filter")
    fn = node.fn

    def sql_filter(view: MessageView) -> bool:
        try:
            return fn(view) is True
        except Exception:  # noqa: BLE001 - evaluation must never crash the broker
            return False

    sql_filter.expression = expression  # type: ignore[attr-defined]
    return sql_filter


def compile_sql_filter(expression: str) -> Predicate:
    """Compile a Service Bus SQL filter into ``predicate(view) -> bool``.

    The predicate is true only when the expression evaluates to TRUE (not FALSE or unknown).
    Raises :class:`FilterError` for a malformed expression.
    """
    if not isinstance(expression, str):
        raise FilterError(
            f"invalid SQL filter: expected a string expression, got {type(expression).__name__}"
        )
    return _compile_sql_filter(expression)


_CORRELATION_SYS = {
    "correlationid": "CorrelationId",
    "messageid": "MessageId",
    "to": "To",
    "replyto": "ReplyTo",
    "label": "Label",
    "subject": "Label",
    "sessionid": "SessionId",
    "replytosessionid": "ReplyToSessionId",
    "contenttype": "ContentType",
}


def compile_correlation_filter(spec: Mapping[str, Any]) -> Predicate:
    """Compile a correlation filter (``CorrelationFilter`` object of Config.json).

    Keys: CorrelationId, MessageId, To, ReplyTo, Label (or Subject), SessionId,
    ReplyToSessionId, ContentType and Properties (application properties). Every given
    condition must match. Raises :class:`FilterError` for an unknown key or bad value.
    """
    if not isinstance(spec, Mapping):
        raise FilterError(f"invalid correlation filter: expected an object, got {type(spec).__name__}")
    conditions: list[tuple[Callable[[MessageView], Any], Any]] = []
    seen_sys: dict[str, Any] = {}
    for key, expected in spec.items():
        lkey = str(key).lower()
        if lkey == "properties":
            if expected is None:
                continue
            if not isinstance(expected, Mapping):
                raise FilterError("invalid correlation filter: 'Properties' must be an object of name: value")
            for pname, pvalue in expected.items():
                if not isinstance(pname, str) or not pname:
                    raise FilterError(f"invalid correlation filter: bad property name {pname!r}")
                if pvalue is not None and _group(pvalue) is None:
                    raise FilterError(
                        f"invalid correlation filter: property {pname!r} has unsupported value type "
                        f"{type(pvalue).__name__}"
                    )
                conditions.append((_user_getter(pname), pvalue))
            continue
        canon = _CORRELATION_SYS.get(lkey)
        if canon is None:
            raise FilterError(
                f"invalid correlation filter: unknown key {key!r} (expected CorrelationId, MessageId, To, "
                "ReplyTo, Label/Subject, SessionId, ReplyToSessionId, ContentType or Properties)"
            )
        if expected is None:
            continue
        if not isinstance(expected, str):
            raise FilterError(
                f"invalid correlation filter: {key!r} must be a string, got {type(expected).__name__}"
            )
        if canon in seen_sys and seen_sys[canon] != expected:
            raise FilterError(
                "invalid correlation filter: Label and Subject disagree "
                f"({seen_sys[canon]!r} vs {expected!r})"
            )
        if canon in seen_sys:
            continue
        seen_sys[canon] = expected
        conditions.append((_sys_getter(canon), expected))
    if not conditions:
        raise FilterError("invalid correlation filter: it has no conditions")
    conds = tuple(conditions)

    def correlation_filter(view: MessageView) -> bool:
        try:
            for get, expected in conds:
                actual = get(view)
                if expected is None:
                    if actual is not None:
                        return False
                elif actual.__class__ is str and expected.__class__ is str:
                    if actual != expected:
                        return False
                elif _equals(actual, expected) is not True:
                    return False
            return True
        except Exception:  # noqa: BLE001
            return False

    return correlation_filter


# --------------------------------------------------------------------------- public: actions


def _coerce_sys(canon: str, value: Any) -> Any:
    """Value to store in a system property, or _MISSING when the type cannot convert."""
    types = _SETTABLE_SYS[canon]
    if str in types and isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) and bool not in types:
        return _MISSING
    if isinstance(value, types):
        return value
    return _MISSING


def _make_set(scope: str, name: str, vf: Callable[[MessageView], Any]) -> Action:
    if scope == "sys":
        keys = _SYS_KEYS[name]

        def set_sys(view: MessageView) -> None:
            try:
                value = vf(view)
            except Exception:  # noqa: BLE001
                value = None
            s = view.system
            if value is None:
                for k in keys:
                    s.pop(k, None)
                return
            value = _coerce_sys(name, value)
            if value is _MISSING:
                return
            present = [k for k in keys if k in s]
            for k in present or keys[:1]:
                s[k] = value

        return set_sys

    def set_user(view: MessageView) -> None:
        try:
            value = vf(view)
        except Exception:  # noqa: BLE001
            value = None
        u = view.user
        key = _find_user_key(u, name)
        if key is _MISSING:
            u[name] = value
            return
        old = u[key]
        if old.__class__ is float and value.__class__ is int:
            value = float(value)  # C# implicit numeric conversion to the existing type
        u[key] = value

    return set_user


def _make_remove(scope: str, name: str) -> Action:
    if scope == "sys":
        keys = _SYS_KEYS[name]

        def remove_sys(view: MessageView) -> None:
            for k in keys:
                view.system.pop(k, None)

        return remove_sys

    lname = name.lower()

    def remove_user(view: MessageView) -> None:
        u = view.user
        for k in [k for k in u if isinstance(k, str) and k.lower() == lname]:
            del u[k]

    return remove_user


@lru_cache(maxsize=1024)
def _compile_sql_action(expression: str) -> Action:
    p = _Parser(expression, "SQL action")
    statements: list[Action] = []
    while True:
        while p.is_op(";"):
            p.advance()
        t = p.tok
        if t.kind == "eof":
            break
        if not (t.kind == "kw" and t.value in ("SET", "REMOVE")):
            raise p.unexpected("SET or REMOVE")
        p.advance()
        target_tok = p.tok
        scope, name = p.parse_property_ref(f"after {t.value}")
        if scope == "sys" and name not in _SETTABLE_SYS:
            raise p.error(f"system property 'sys.{name}' is read-only", target_tok.pos)
        if t.value == "SET":
            p.expect_op("=", f"after SET {name}")
            value = p.need_value(p.parse_additive(), f"on the right of SET {name} =")
            statements.append(_make_set(scope, name, value.fn))
        else:
            statements.append(_make_remove(scope, name))
        nt = p.tok
        if not (nt.kind == "eof" or (nt.kind == "op" and nt.value == ";")
                or (nt.kind == "kw" and nt.value in ("SET", "REMOVE"))):
            raise p.unexpected("';', SET, REMOVE or the end of the action")
    if not statements:
        raise p.error("the action has no SET or REMOVE statement", 0)
    stmts = tuple(statements)
    if len(stmts) == 1:
        (only,) = stmts

        def sql_action(view: MessageView) -> None:
            only(view)

    else:

        def sql_action(view: MessageView) -> None:
            for st in stmts:
                st(view)

    sql_action.expression = expression  # type: ignore[attr-defined]
    return sql_action


def compile_sql_action(expression: str) -> Action:
    """Compile a rule action (``SET p = expr; REMOVE q``) into ``action(view)`` that edits
    ``view.system`` / ``view.user`` in place. Raises :class:`FilterError` when malformed."""
    if not isinstance(expression, str):
        raise FilterError(
            f"invalid SQL action: expected a string expression, got {type(expression).__name__}"
        )
    return _compile_sql_action(expression)


# --------------------------------------------------------------------------- public: rules


def _get_ci(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    if key in mapping:
        return mapping[key]
    lk = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lk:
            return v
    return default


def _expression_of(container: Any, where: str) -> str:
    if not isinstance(container, Mapping):
        raise FilterError(f"'{where}' must be an object with a SqlExpression")
    expr = _get_ci(container, "SqlExpression")
    if expr is None:
        raise FilterError(f"'{where}' has no SqlExpression")
    if not isinstance(expr, str):
        raise FilterError(f"'{where}.SqlExpression' must be a string, got {type(expr).__name__}")
    if not expr.strip():
        raise FilterError(f"'{where}.SqlExpression' is empty")
    return expr


def compile_rule(rule: Mapping[str, Any]) -> tuple[Predicate, Action | None]:
    """Compile one Config.json rule into ``(predicate, action or None)``.

    Accepts ``{"Name": ..., "Properties": {"FilterType": "Sql"|"Correlation",
    "SqlFilter": {"SqlExpression": ...} | "CorrelationFilter": {...},
    "Action": {"SqlExpression": ...}}}`` (keys matched case-insensitively). Raises
    :class:`FilterError`, naming the rule, for anything malformed.
    """
    if not isinstance(rule, Mapping):
        raise FilterError(f"invalid rule: expected an object, got {type(rule).__name__}")
    name = _get_ci(rule, "Name")
    label = f"rule {name!r}" if name is not None else "rule (unnamed)"
    try:
        props = _get_ci(rule, "Properties")
        if not isinstance(props, Mapping):
            raise FilterError("missing 'Properties' object")
        ftype = _get_ci(props, "FilterType")
        if ftype is None:
            raise FilterError("missing FilterType (expected 'Sql' or 'Correlation')")
        kind = str(ftype).lower()
        if kind == "sql":
            predicate = compile_sql_filter(_expression_of(_get_ci(props, "SqlFilter"), "SqlFilter"))
        elif kind == "correlation":
            spec = _get_ci(props, "CorrelationFilter")
            if not isinstance(spec, Mapping):
                raise FilterError("FilterType 'Correlation' needs a 'CorrelationFilter' object")
            predicate = compile_correlation_filter(spec)
        else:
            raise FilterError(f"unknown FilterType {ftype!r} (expected 'Sql' or 'Correlation')")
        action_spec = _get_ci(props, "Action")
        action = None if action_spec is None else compile_sql_action(_expression_of(action_spec, "Action"))
    except FilterError as exc:
        raise FilterError(f"{label}: {exc}", position=exc.position, expression=exc.expression) from None
    return predicate, action
