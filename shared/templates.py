"""User templates (report subjects and bodies) in a bounded Jinja2 immutable sandbox.

Shared by the mailer, which renders them, and the API, which checks them when a
report is saved so that a broken template is a 422 at once, not a failed run later.

The sandbox stops templates from reaching Python internals; `BoundedSandbox` also
stops them from spending unbounded time or memory. Every render gets a budget:

* a wall-clock limit (`TIME_BUDGET_S`), checked at every loop iteration, call,
  filter, operator, concatenation and output piece;
* `range()` of at most `MAX_RANGE` items and at most `MAX_ITERATIONS` loop
  iterations in total (`{% for %}` loops are compiled with a counting wrapper);
* no single value (string, list, ...) above `MAX_VALUE_CHARS`: every operation that
  can grow a value (`*`, `**`, `+`, `%`, `~`, str methods such as `ljust`/`join`/
  `format`, filters such as `center`/`indent`/`join`/`replace`, `lipsum()`, list
  and dict literals, captured blocks and macro output) is checked *before* it runs
  where its size is predictable, and its result after; integers stay below
  `MAX_INT_BITS`;
* at most `MAX_WORK_CHARS` produced by all those operations together, so a template
  cannot keep many large values alive at once.

The clock is read between operations, never inside one: a single operation (a sort,
a `|replace`) cannot be interrupted, which is why each is also bounded in size; the
largest allowed take a small fraction of the budget.

A template that exceeds a limit fails with a message naming the construct
("The subject template uses range() with more than 1000 items.").
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import time
import types
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup, escape

from shared.errors import FieldError, PermanentError

MAX_BODY_CHARS = 200_000
TEMPLATE_VARIABLES = ("report_name", "date", "run_time", "row_count", "timezone")

TIME_BUDGET_S = 1.0  # wall clock per render
MAX_RANGE = 1000  # items one range() may produce
MAX_ITERATIONS = 10_000  # loop iterations per render, all loops together
MAX_VALUE_CHARS = MAX_BODY_CHARS  # characters (or items) in any one value
MAX_WORK_CHARS = 10 * MAX_VALUE_CHARS  # characters (or items) produced by all operations of one render
MAX_INT_BITS = 10_000  # about 3000 decimal digits
MAX_NESTING = 32  # lists in lists in ...
MAX_SOURCE_CHARS = 100_000  # the API allows 20,000 for a body
MAX_JSON_INDENT = 16


class TemplateLimitError(PermanentError):
    """A template went over one of the sandbox's limits (time, size, iterations)."""


class _LimitExceeded(Exception):
    """Raised inside a render; `detail` completes "The <field> template ..."."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


# --- the per-render budget ----------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "iterations", "work", "budget_s")

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.deadline = time.monotonic() + budget_s
        self.iterations = 0
        self.work = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _LimitExceeded(f"took longer than {self.budget_s:g} s to render")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise _LimitExceeded(f"runs more than {MAX_ITERATIONS} loop iterations")
        self.tick()

    def charge(self, size: int) -> None:
        self.work += size
        if self.work > MAX_WORK_CHARS:
            raise _LimitExceeded(
                f"builds more than {MAX_WORK_CHARS} characters of values in total (work limit {MAX_WORK_CHARS})"
            )
        self.tick()


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("biapp_template_budget", default=None)


def _budget() -> _Budget:
    # Outside render_template (someone compiling or rendering directly) the size limits still hold.
    return _BUDGET.get() or _Budget(TIME_BUDGET_S)


# --- sizes --------------------------------------------------------------------------

_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, set, frozenset, dict, Namespace)


def _size(value: object, cap: int = MAX_VALUE_CHARS) -> int:
    """Characters/items `value` stands for, counting shared parts each time (as str() would).

    Stops counting once past `cap`; refuses nesting deeper than MAX_NESTING.
    """
    if isinstance(value, _TEXT):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 1
    memo: dict[int, int] = {}

    def walk(item: object, depth: int) -> int:
        if isinstance(item, _TEXT):
            return len(item)
        if not isinstance(item, _CONTAINERS):
            return 1
        key = id(item)
        if key in memo:
            return memo[key]
        if depth > MAX_NESTING:
            raise _LimitExceeded(f"nests values more than {MAX_NESTING} deep")
        memo[key] = cap + 1  # a cycle counts as too big
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        children = (x for pair in item.items() for x in pair) if isinstance(item, dict) else item
        total = 0
        for child in children:
            total += max(1, walk(child, depth + 1))
            if total > cap:
                break
        memo[key] = max(1, total)
        return memo[key]

    return walk(value, 0)


def _unit(value: object) -> str:
    return "characters" if isinstance(value, _TEXT) else "items"


def _refuse_size(what: str, size: int, unit: str = "characters") -> None:
    if size > MAX_VALUE_CHARS:
        raise _LimitExceeded(f"uses {what} to make {size} {unit} (limit {MAX_VALUE_CHARS})")


def _check_inputs(what: str, values: Iterable[object]) -> None:
    for value in values:
        if _size(value) > MAX_VALUE_CHARS:
            raise _LimitExceeded(f"uses a value of more than {MAX_VALUE_CHARS} {_unit(value)} in {what}")


def _checked(what: str, result: object) -> object:
    """The result of an operation: refused when too big, charged to the render's work budget."""
    size = _size(result)
    _refuse_size(what, size, _unit(result))
    _budget().charge(size)
    return result


def _int_arg(value: object) -> int:
    """An integer argument (width, count ...), or 0 when it is not one (the call then fails on its own)."""
    return value if isinstance(value, int) else 0


# printf-style conversions; possessive quantifiers keep the scan linear
_PERCENT_SPEC = re.compile(r"%(?:\(([^)]*+)\))?[-#0 +]*+(\*|\d++)?(?:\.(\*|\d*+))?[hlL]?[diouxXeEfFgGcrsab%]")
_DIGITS = re.compile(r"\d++")


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 9 else 10**9


def _check_percent(what: str, fmt: str | bytes, args: object) -> None:
    """Estimate `fmt % args` before running it: widths and precisions count in full."""
    if isinstance(fmt, bytes | bytearray):
        fmt = fmt.decode("latin-1")
    mapping = args if isinstance(args, Mapping) else None
    estimate = len(fmt) + (0 if mapping is not None else _size(args))
    for match in _PERCENT_SPEC.finditer(fmt):
        name, width, precision = match.groups()
        if width == "*" or precision == "*":
            raise _LimitExceeded(f"uses {what} with a '*' width or precision, which is not allowed")
        estimate += _number(width or "0") + _number(precision or "0")
        if mapping is not None and name is not None:  # "%(a)s%(a)s": each use of a key copies its value
            estimate += _size(mapping.get(name))
        _refuse_size(what, estimate)
    _refuse_size(what, estimate)


def _check_format_spec(spec: str) -> None:
    for digits in _DIGITS.findall(spec):
        if _number(digits) > MAX_VALUE_CHARS:
            raise _LimitExceeded(
                f"uses format() with a width or precision of {_number(digits)} (limit {MAX_VALUE_CHARS})"
            )


def _counted_items(what: str, iterable: object, separator: int = 0) -> list:
    """Materialise an iterable for joining/summing, refusing once the total would be too big."""
    budget = _budget()
    items: list = []
    total = 0
    for item in iterable:  # type: ignore[union-attr]
        total += _size(item) + separator
        _refuse_size(what, total)
        budget.tick()
        items.append(item)
    return items


# --- str / bytes / int methods ------------------------------------------------------


def _check_text_method(owner: str | bytes | bytearray, name: str, args: tuple, kwargs: dict) -> tuple:
    """Refuse a str/bytes method call whose result would be too big; returns the (maybe materialised) args."""
    what = f"{name}()"
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        _refuse_size(what, max(len(owner), _int_arg(width)))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        _refuse_size(
            what, len(owner) + (owner.count("\t" if isinstance(owner, str) else b"\t") + 1) * max(0, _int_arg(tabsize))
        )
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(old, str | bytes) and isinstance(new, str | bytes) and len(new) > len(old):
            hits = owner.count(old) if old else len(owner) + 1
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _refuse_size(what, len(owner) + hits * (len(new) - len(old)))
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str | bytes)), default=1)
        _refuse_size(what, len(owner) * max(1, longest))
    elif name == "join" and args:
        return (_counted_items(what, args[0], separator=len(owner)), *args[1:])
    return args


class _BoundedFormatterMixin:
    """str.format in the sandbox, with every field's width/precision and the total output bounded."""

    _made = 0

    def format_field(self, value, format_spec):
        _check_format_spec(format_spec)
        _check_inputs("format()", (value,))
        out = super().format_field(value, format_spec)  # type: ignore[misc]
        self._made += len(out)
        _refuse_size("format()", self._made)
        return out


class _BoundedFormatter(_BoundedFormatterMixin, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedFormatterMixin, SandboxedEscapeFormatter):
    pass


# --- filters and globals ------------------------------------------------------------


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _pre_center(value, width=80):
    _refuse_size("|center", max(len(_text(value)), _int_arg(width)))


def _pre_indent(s, width=4, first=False, blank=False):
    text = _text(s)
    pad = len(width) if isinstance(width, str) else _int_arg(width)
    _refuse_size("|indent", len(text) + (text.count("\n") + 1) * max(0, pad))


def _pre_wordwrap(s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    # a line ends at a whitespace character or every `width` characters of a long word
    text = _text(s)
    wrap = len(wrapstring) if isinstance(wrapstring, str) else 2  # the environment's newline sequence
    spaces = len(text) - len("".join(text.split()))
    breaks = spaces + len(text) // max(1, _int_arg(width)) + 1
    _refuse_size("|wordwrap", len(text) + breaks * wrap)


def _pre_replace(s, old, new, count=None):
    # with autoescape the replacement may be escaped first: count it escaped (never shorter)
    text, old, new = _text(s), _text(old), str(escape(new))
    if len(new) > len(old):
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _refuse_size("|replace", len(text) + hits * (len(new) - len(old)))


def _pre_join(value, d="", attribute=None):
    return _counted_items("|join", value, separator=len(_text(d)))


def _pre_format(value, *args, **kwargs):
    _check_percent("|format", _text(value), kwargs or args)


def _pre_batch(value, linecount, fill_with=None):
    if _int_arg(linecount) > MAX_RANGE:
        raise _LimitExceeded(f"uses |batch with more than {MAX_RANGE} items per batch")


def _pre_slice(value, slices, fill_with=None):
    if _int_arg(slices) > MAX_RANGE:
        raise _LimitExceeded(f"uses |slice with more than {MAX_RANGE} slices")


def _pre_sum(iterable, attribute=None, start=0):
    if isinstance(start, int | float):
        return None
    return _counted_items("|sum", iterable, separator=0)


def _pre_tojson(value, indent=None):
    size = len(indent) if isinstance(indent, str) else _int_arg(indent)
    if size > MAX_JSON_INDENT:
        raise _LimitExceeded(f"uses |tojson with an indent beyond {MAX_JSON_INDENT}")


def _pre_urlize(value, trim_url_limit=None, nofollow=False, target=None, rel=None, extra_schemes=None):
    text = _text(value)
    links = text.count(".") + text.count("@") + text.count(":") + 1
    extra = len(_text(target or "")) + len(_text(rel or "")) + 80
    _refuse_size("|urlize", 2 * len(text) + links * extra)


_FILTER_CHECKS = {
    "center": _pre_center,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "replace": _pre_replace,
    "join": _pre_join,
    "format": _pre_format,
    "batch": _pre_batch,
    "slice": _pre_slice,
    "sum": _pre_sum,
    "tojson": _pre_tojson,
    "urlize": _pre_urlize,
}


def _bounded_filter(name: str, func):
    check = _FILTER_CHECKS.get(name)
    what = f"|{name}"
    # pass_context / pass_eval_context / pass_environment filters get that object first
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def bounded(*args, **kwargs):
        _budget().tick()
        _check_inputs(what, args[offset:])
        _check_inputs(what, kwargs.values())
        if check is not None and len(args) > offset:
            replaced = check(*args[offset:], **kwargs)
            if replaced is not None:
                args = (*args[:offset], replaced, *args[offset + 1 :])
        return _checked(what, func(*args, **kwargs))

    return bounded


def _bounded_range(*args: int) -> range:
    items = range(*args)
    try:
        too_many = len(items) > MAX_RANGE
    except OverflowError:
        too_many = True
    if too_many:
        raise _LimitExceeded(f"uses range() with more than {MAX_RANGE} items")
    return items


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # jinja's parameter names
    # about 12 characters per word, up to `max` words per paragraph
    _refuse_size("lipsum()", 12 * _int_arg(n) * (abs(_int_arg(min)) + abs(_int_arg(max))))
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


class _BoundedIterable:
    """What a `{% for %}` loop iterates: counts every item against the render's budget."""

    __slots__ = ("_iterable",)

    def __init__(self, iterable: Iterable):
        self._iterable = iterable

    def __iter__(self) -> Iterator:
        budget = _budget()
        for item in self._iterable:
            budget.iterate()
            yield item

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]  # TypeError when unsized: LoopContext handles it


# --- the compiler: counted loops, checked literals and '~' ----------------------------


class _BoundedCodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not isinstance(node.iter, nodes.Call) or not (
            isinstance(node.iter.node, nodes.EnvironmentAttribute) and node.iter.node.name == "bounded_iterable"
        ):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("bounded_iterable"), [node.iter], [], None, None, lineno=node.lineno
            ).set_environment(self.environment)
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    @optimizeconst
    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.bounded_literal(")
        super().visit_List(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.bounded_literal(")
        super().visit_Dict(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target
            super().visit_Tuple(node, frame)
            return
        self.write("environment.bounded_literal(")
        super().visit_Tuple(node, frame)
        self.write(")")


# --- the environment ----------------------------------------------------------------


def _finalize(value: object) -> object:
    """Every `{{ ... }}` value before it becomes text."""
    _check_inputs("{{ ... }}", (value,))
    return value


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox plus limits on time, iterations and value sizes (see the module doc)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options):
        options.setdefault("finalize", _finalize)
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}

    # loops, literals, '~' and captured blocks (compiled by _BoundedCodeGenerator)

    def bounded_iterable(self, iterable: Iterable) -> _BoundedIterable:
        return _BoundedIterable(iterable)

    def bounded_literal(self, value: object) -> object:
        return _checked("a list or dict literal", value)

    def bounded_concat(self, join, parts: tuple) -> str:
        _refuse_size("'~'", sum(_size(part) for part in parts))
        return _checked("'~'", join(parts))  # type: ignore[return-value]

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        """Joins captured output: {% set %} blocks, macro and caller() output, {% filter %} blocks."""
        budget = _budget()
        collected: list[str] = []
        total = 0
        for piece in pieces:
            total += len(piece)
            if total > MAX_VALUE_CHARS:
                raise _LimitExceeded(
                    f"builds a block ({{% set %}}, macro or filter block) of more than {MAX_VALUE_CHARS} characters"
                )
            budget.tick()
            collected.append(piece)
        result = "".join(collected)
        budget.charge(len(result))
        return result

    # operators

    def call_binop(self, context, operator: str, left, right):
        _budget().tick()
        what = f"'{operator}'"
        if operator == "*":
            self._check_multiply(left, right)
        elif operator == "**":
            self._check_power(left, right)
        elif operator == "+" and not isinstance(left, int | float) and not isinstance(right, int | float):
            _refuse_size(what, _size(left) + _size(right), _unit(left))
        elif operator == "%" and isinstance(left, str | bytes):
            _check_percent(what, left, right)
        return _checked(what, self.binop_table[operator](left, right))

    @staticmethod
    def _check_multiply(left, right) -> None:
        if isinstance(left, int) and isinstance(right, int):
            bits = abs(left).bit_length() + abs(right).bit_length()
            if bits > MAX_INT_BITS:
                raise _LimitExceeded(
                    f"uses '*' to make a number of about {_digits(bits)} digits (limit {_digits(MAX_INT_BITS)})"
                )
            return
        for sequence, times in ((left, right), (right, left)):
            if isinstance(times, int) and not isinstance(sequence, int | float) and hasattr(sequence, "__len__"):
                _refuse_size("'*'", _size(sequence, cap=MAX_VALUE_CHARS) * max(0, times), _unit(sequence))

    @staticmethod
    def _check_power(base, exponent) -> None:
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            bits = abs(base).bit_length() * exponent
            if bits > MAX_INT_BITS:
                raise _LimitExceeded(
                    f"uses '**' to make a number of about {_digits(bits)} digits (limit {_digits(MAX_INT_BITS)})"
                )

    # calls: macros, globals and methods

    def call(self, context, obj, /, *args, **kwargs):
        _budget().tick()
        if not self.is_safe_callable(obj):
            raise SecurityError(f"{obj!r} is not safely callable")
        name = getattr(obj, "__name__", None) or getattr(obj, "name", None) or type(obj).__name__
        what = "{% for %}" if name == "bounded_iterable" else f"{name}()"
        _check_inputs(what, args)
        _check_inputs(what, (v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")))
        owner = getattr(obj, "__self__", None)
        if isinstance(obj, LoopContext) and args:  # loop(children) in a recursive loop
            args = (_BoundedIterable(args[0]), *args[1:])
        elif isinstance(owner, _TEXT) and isinstance(obj, types.BuiltinMethodType | types.MethodType):
            args = _check_text_method(owner, name, args, kwargs)
        elif isinstance(owner, int) and name == "to_bytes":
            length = args[0] if args else kwargs.get("length", 1)
            _refuse_size(what, _int_arg(length))
        return _checked(what, context.call(obj, *args, **kwargs))

    def wrap_str_format(self, value):
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        str_type = type(owner)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args, **kwargs):
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            if isinstance(owner, Markup):
                formatter: SandboxedFormatter = _BoundedEscapeFormatter(self, escape=owner.escape)
            else:
                formatter = _BoundedFormatter(self)
            return str_type(formatter.vformat(owner, args, kwargs))

        return functools.update_wrapper(wrapper, value)


def _digits(bits: int) -> int:
    return math.ceil(bits * math.log10(2))


_ENV = BoundedSandbox(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = BoundedSandbox(autoescape=True, undefined=StrictUndefined)


def template_context(report_name: str, run_local: datetime, row_count: int, timezone: str) -> dict:
    return {
        "report_name": report_name,
        "date": run_local.strftime("%Y-%m-%d"),
        "run_time": run_local.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "row_count": row_count,
        "timezone": timezone,
    }


def render_template(
    source: str, context: dict, *, html: bool = False, field: str = "template", limit: int = MAX_BODY_CHARS
) -> str:
    """Render a user template in the bounded sandbox; PermanentError (a clear message) on anything unsafe,
    invalid or over a limit (TemplateLimitError then)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateLimitError(f"The {field} template is longer than {MAX_SOURCE_CHARS} characters.")
    env = _HTML_ENV if html else _ENV
    budget = _Budget(TIME_BUDGET_S)
    token = _BUDGET.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for piece in env.from_string(source).generate(**context):
            budget.tick()
            parts.append(piece)
            size += len(piece)
            if size > limit:
                raise PermanentError(f"The {field} template produces more than {limit} characters.")
        return "".join(parts)
    except _LimitExceeded as exc:
        raise TemplateLimitError(f"The {field} template {exc.detail}.") from None
    except SecurityError:
        raise PermanentError(f"The {field} template tried something unsafe and was refused.") from None
    except TemplateError as exc:
        raise PermanentError(f"The {field} template is invalid: {exc.message or type(exc).__name__}") from None
    except RecursionError:
        raise PermanentError(f"The {field} template nests or calls itself too deeply.") from None
    except PermanentError:
        raise
    except Exception as exc:  # anything a user's template raises is that template's failure
        detail = str(exc)[:200] or type(exc).__name__
        raise PermanentError(f"The {field} template failed: {type(exc).__name__}: {detail}") from None
    finally:
        _BUDGET.reset(token)


def check_template(source: str | None, field: str) -> None:
    """Raise FieldError(field) when a template would fail at send time."""
    if not source:
        return
    sample = template_context("Report", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), 10, "UTC")
    try:
        render_template(source, sample, field=field)
        if field == "body":  # the mailer renders the body for its HTML part too (autoescaped)
            render_template(source, sample, field=field, html=True)
    except PermanentError as exc:
        raise template_field_error(exc, field) from None


def template_field_error(exc: PermanentError, field: str) -> FieldError:
    """The 422 of a template that failed: the sandbox's message, with the variables unless a limit was hit."""
    if isinstance(exc, TemplateLimitError):
        return FieldError(field, exc.message)
    allowed = ", ".join(TEMPLATE_VARIABLES)
    return FieldError(field, f"{exc.message} Available variables: {allowed}.")
