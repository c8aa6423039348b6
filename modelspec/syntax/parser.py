"""Text → AST. Lark's LALR parser over grammar/mspec.lark, then a transformer
that builds the frozen dataclasses of `ast.py`. Every failure becomes a
Diagnostic; nothing from Lark escapes to the user."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from modelspec.diagnostics import CompileError, Span, error
from modelspec.syntax import ast

# Deeper nesting than this is refused before the tree is walked: later stages
# recurse over expressions, and no real spec comes near it.
MAX_NESTING = 400
# Integers beyond this cannot be a size of anything; refusing them keeps
# arithmetic on constants fast.
MAX_INT = 2**128

TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "DOT": "`.`",
    "COMPARE": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/`, `//` or `%`",
    "POW_OP": "`**`",
    "$END": "end of file",
}


@dataclass
class Comment:
    line: int
    column: int
    text: str


@dataclass
class ParseResult:
    module: ast.Module
    comments: list[Comment] = field(default_factory=list)


@functools.cache
def _lark() -> Lark:
    grammar = resources.files("modelspec.grammar").joinpath("mspec.lark").read_text()
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos, meta.end_pos)


def _token_span(file: str, token: Token) -> Span:
    return Span(
        file,
        token.line,
        token.column,
        token.end_line,
        token.end_column,
        token.start_pos,
        token.end_pos,
    )


def _describe(token_type: str) -> str:
    if token_type in TOKEN_NAMES:
        return TOKEN_NAMES[token_type]
    if token_type.startswith("__ANON") or token_type.isupper():
        return f"`{token_type.lower()}`"
    return token_type


# Tokens that would continue an expression: listed as one "an operator" so the
# tokens that matter (`=`, `}`, `)`, a name) stay visible.
_OPERATORS = {"ADD_OP", "MUL_OP", "POW_OP", "COMPARE", "__ANON_0", "DOT", "LPAR", "AND", "OR", "IF", "NOT"}
_FIRST = ["EQUAL", "COLON", "RBRACE", "RPAR", "RSQB", "COMMA", "LBRACE", "NAME", "STRING", "INT", "FLOAT"]


def _expected(names) -> str:
    names = set(names)
    operators = {n for n in names if n in _OPERATORS or n.startswith("__ANON")}
    ordered = [n for n in _FIRST if n in names]
    ordered += sorted(n for n in names - operators - set(ordered) if not n.startswith("__"))
    described = [_describe(n) for n in ordered]
    if operators:
        described.append("an operator")
    if not described:
        return ""
    if len(described) > 6:
        described = described[:6] + ["…"]
    return "expected " + ", ".join(described)


class _Builder(Transformer_NonRecursive):
    """Lark tree → ast dataclasses. Only structure here; no name lookups."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def sp(self, meta) -> Span:
        return _span(self.file, meta)

    def tsp(self, token: Token) -> Span:
        return _token_span(self.file, token)

    # ---- atoms
    @v_args(meta=True)
    def name(self, meta, children):
        return ast.Name(self.sp(meta), str(children[0]))

    @v_args(meta=True)
    def int_lit(self, meta, children):
        text = str(children[0])
        digits = text.replace("_", "")
        span = self.sp(meta)
        if len(digits) > 40 or int(digits) > MAX_INT:
            raise CompileError(
                error(
                    "E0007",
                    "integer literal is too large",
                    span,
                    f"{len(digits)} digits",
                    notes=[f"integers in a spec are at most {MAX_INT:.3e}"],
                )
            )
        return ast.Int(span, int(digits), text)

    @v_args(meta=True)
    def float_lit(self, meta, children):
        text = str(children[0])
        value = float(text.replace("_", ""))
        span = self.sp(meta)
        if value != value or value in (float("inf"), float("-inf")):
            raise CompileError(error("E0007", "number literal is out of range", span, "not a finite number"))
        return ast.Float(span, value, text)

    @v_args(meta=True)
    def string_lit(self, meta, children):
        text = str(children[0])
        return ast.Str(self.sp(meta), _unescape(text, self.tsp(children[0])), text)

    @v_args(meta=True)
    def true_lit(self, meta, children):
        return ast.Bool(self.sp(meta), True)

    @v_args(meta=True)
    def false_lit(self, meta, children):
        return ast.Bool(self.sp(meta), False)

    @v_args(meta=True)
    def tuple_lit(self, meta, children):
        return ast.Tuple(self.sp(meta), tuple(c for c in children if c is not None))

    @v_args(meta=True)
    def list_lit(self, meta, children):
        return ast.List(self.sp(meta), tuple(c for c in children if c is not None))

    # ---- operators
    @v_args(meta=True)
    def binary(self, meta, children):
        left, op, right = children
        return ast.Binary(self.sp(meta), str(op), left, right)

    compare = binary

    @v_args(meta=True)
    def unary(self, meta, children):
        op, operand = children
        return ast.Unary(self.sp(meta), str(op), operand)

    @v_args(meta=True)
    def not_op(self, meta, children):
        return ast.Unary(self.sp(meta), "not", children[0])

    @v_args(meta=True)
    def or_op(self, meta, children):
        return ast.Binary(self.sp(meta), "or", children[0], children[1])

    @v_args(meta=True)
    def and_op(self, meta, children):
        return ast.Binary(self.sp(meta), "and", children[0], children[1])

    @v_args(meta=True)
    def pipe(self, meta, children):
        value, stage = children
        if isinstance(value, ast.Pipe):
            return ast.Pipe(self.sp(meta), value.value, value.stages + (stage,))
        return ast.Pipe(self.sp(meta), value, (stage,))

    @v_args(meta=True)
    def call(self, meta, children):
        func, *args = children
        return ast.Call(self.sp(meta), func, tuple(a for a in args if a is not None))

    @v_args(meta=True)
    def attribute(self, meta, children):
        value, attr = children
        return ast.Attribute(self.sp(meta), value, str(attr))

    @v_args(meta=True)
    def positional_arg(self, meta, children):
        return ast.PositionalArg(self.sp(meta), children[0])

    @v_args(meta=True)
    def keyword_arg(self, meta, children):
        name, value = children
        return ast.KeywordArg(self.sp(meta), str(name), self.tsp(name), value)

    @v_args(meta=True)
    def arrow_arg(self, meta, children):
        return ast.ArrowArg(self.sp(meta), children[0], children[1])

    # ---- statements
    def body(self, children):
        return tuple(children)

    @v_args(meta=True)
    def tensor_type(self, meta, children):
        dtype, *dims = children
        return ast.TensorTypeExpr(self.sp(meta), str(dtype), self.tsp(dtype), tuple(d for d in dims if d is not None))

    @v_args(meta=True)
    def input_stmt(self, meta, children):
        name, type_ = children
        return ast.Input(self.sp(meta), str(name), self.tsp(name), type_)

    @v_args(meta=True)
    def output_stmt(self, meta, children):
        name, value = children
        return ast.Output(self.sp(meta), str(name), self.tsp(name), value)

    @v_args(meta=True)
    def let_stmt(self, meta, children):
        name, value = children
        return ast.Let(self.sp(meta), str(name), self.tsp(name), value)

    def repeat_as(self, children):
        return children  # [NAME, NAME | None]

    @v_args(meta=True)
    def repeat_stmt(self, meta, children):
        count, as_clause, body = children
        name = index = name_span = index_span = None
        if as_clause is not None:
            name, name_span = str(as_clause[0]), self.tsp(as_clause[0])
            if as_clause[1] is not None:
                index, index_span = str(as_clause[1]), self.tsp(as_clause[1])
        return ast.Repeat(self.sp(meta), count, name, name_span, index, body, index_span)

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        condition, then, *rest = children
        orelse = rest[0] if rest else None
        if orelse is None:
            orelse = ()
        elif isinstance(orelse, ast.If):
            orelse = (orelse,)
        return ast.If(self.sp(meta), condition, then, orelse)

    @v_args(meta=True)
    def assert_stmt(self, meta, children):
        condition, message = children
        text = _unescape(str(message), self.tsp(message)) if message is not None else None
        return ast.Assert(self.sp(meta), condition, text)

    # ---- declarations
    @v_args(meta=True)
    def import_decl(self, meta, children):
        return ast.Import(self.sp(meta), _unescape(str(children[0]), self.tsp(children[0])))

    @v_args(meta=True)
    def use_decl(self, meta, children):
        return ast.Use(self.sp(meta), _unescape(str(children[0]), self.tsp(children[0])))

    @v_args(meta=True)
    def param(self, meta, children):
        name, type_name, default = children
        return ast.Param(self.sp(meta), str(name), str(type_name), self.tsp(type_name), default)

    def params(self, children):
        return tuple(c for c in children if c is not None)

    def _model(self, meta, children, kind):
        name, params, body = children
        return ast.ModelDecl(self.sp(meta), str(name), self.tsp(name), kind, params or (), body)

    @v_args(meta=True)
    def model_decl(self, meta, children):
        return self._model(meta, children, "model")

    @v_args(meta=True)
    def block_decl(self, meta, children):
        return self._model(meta, children, "block")

    @v_args(meta=True)
    def variant_decl(self, meta, children):
        name, base, *args = children
        return ast.Variant(
            self.sp(meta),
            str(name),
            self.tsp(name),
            str(base),
            self.tsp(base),
            tuple(a for a in args if a is not None),
        )

    @v_args(meta=True)
    def gan_item(self, meta, children):
        role, value = children
        return ast.GanItem(self.sp(meta), str(role), self.tsp(role), value)

    @v_args(meta=True)
    def gan_decl(self, meta, children):
        name, *items = children
        return ast.Gan(self.sp(meta), str(name), self.tsp(name), tuple(items))

    @v_args(meta=True)
    def labelled(self, meta, children):
        label, value = children
        return ast.Labelled(self.sp(meta), str(label), self.tsp(label), value)

    def labelled_values(self, children):
        return tuple(children)

    @v_args(meta=True)
    def setting(self, meta, children):
        key, value = children
        return ast.Setting(self.sp(meta), str(key), self.tsp(key), value)

    @v_args(meta=True)
    def model_setting(self, meta, children):
        span = self.sp(meta)
        key_span = Span(span.file, span.line, span.column, span.line, span.column + 5, span.start, span.start + 5)
        return ast.Setting(span, "model", key_span, children[0])

    @v_args(meta=True)
    def train_decl(self, meta, children):
        name, *settings = children
        return ast.Train(self.sp(meta), str(name), self.tsp(name), tuple(settings))

    def start(self, children):
        return children


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "0": "\0"}


def _unescape(text: str, span: Span) -> str:
    body = text[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                # `span` is the string token's: the escape starts after the quote, at `i`.
                at = Span(span.file, span.line, span.column + 1 + i, span.line, span.column + 3 + i)
                raise CompileError(
                    error(
                        "E0003",
                        f"unknown escape `\\{nxt}` in string",
                        at,
                        "unknown escape",
                        help='the escapes are \\n, \\t, \\r, \\0, \\\\ and \\"',
                    )
                )
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _nesting_depth(tree: Tree) -> int:
    """Depth of the parse tree, measured without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.children:
            if isinstance(child, Tree):
                # A chain of `|>` becomes one flat node, so it does not count as nesting.
                step = 0 if (child.data == "pipe" and node.data == "pipe") else 1
                stack.append((child, depth + step))
    return deepest


def _deepest_point(tree: Tree, file: str) -> Span | None:
    best = (0, None)
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best[0] and getattr(node.meta, "line", None) is not None:
            best = (depth, node.meta)
        for child in node.children:
            if isinstance(child, Tree):
                step = 0 if (child.data == "pipe" and node.data == "pipe") else 1
                stack.append((child, depth + step))
    return _span(file, best[1]) if best[1] is not None else None


def _syntax_error(exc: UnexpectedInput, text: str, file: str):
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos]
        span = Span(file, line, column, line, column + 1, pos, pos + 1)
        if char == '"':
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            span = Span(file, line, column, line, column + (end - pos), pos, end)
            return error(
                "E0003",
                "unterminated string",
                span,
                'this string has no closing `"`',
                help='close it with `"` before the end of the line',
            )
        shown = repr(char)[1:-1] if not char.isprintable() or char == " " else char
        expected = _expected(exc.allowed or ())
        return error(
            "E0002",
            f"unexpected character `{shown}`",
            span,
            "not valid here",
            notes=[expected] if expected else [],
        )
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.split("\n")
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2, len(text), len(text))
        expected = _expected(exc.expected)
        return error(
            "E0001",
            "unexpected end of file",
            span,
            "the file ends here",
            notes=[expected] if expected else [],
            help="a `{` may be missing its `}`" if "RBRACE" in exc.expected else None,
        )
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    span = _token_span(file, token)
    expected = _expected(exc.expected)
    shown = str(token).replace("\n", " ")
    if len(shown) > 40:
        shown = shown[:37] + "..."
    help = None
    if token.type == "EQUAL" and "RPAR" in exc.expected:
        help = "a keyword argument needs a plain name before `=`"
    return error(
        "E0001",
        f"unexpected `{shown}`",
        span,
        "not expected here",
        notes=[expected] if expected else [],
        help=help,
    )


def _undo_lark_error_state(exc: UnexpectedInput) -> None:
    # Lark keeps interactive parser state on the exception; drop it so the
    # exception (and the source text it holds) can be collected.
    if hasattr(exc, "interactive_parser"):
        exc.interactive_parser = None


def decode(data: bytes, file: str) -> str:
    """Bytes → text, as UTF-8; a bad byte is reported where it stands."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        span = Span(file, line, column, line, column + 1, len(before), len(before) + 1)
        raise CompileError(
            error(
                "E0004",
                "file is not valid UTF-8",
                span,
                f"byte 0x{data[exc.start]:02x} cannot start or continue a character here",
                help="save the file as UTF-8",
            )
        ) from None


def parse(text: str, file: str = "<string>") -> ParseResult:
    """Parse one file's text. Raises CompileError with the diagnostics on failure."""
    if "\x00" in text:
        pos = text.index("\x00")
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        span = Span(file, line, column, line, column + 1, pos, pos + 1)
        raise CompileError(error("E0002", "unexpected character `\\x00`", span, "a NUL byte: is this a binary file?"))
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        _undo_lark_error_state(exc)
        raise CompileError(_syntax_error(exc, text, file)) from None
    if _nesting_depth(tree) > MAX_NESTING:
        raise CompileError(
            error(
                "E0006",
                "nesting is too deep",
                _deepest_point(tree, file),
                f"more than {MAX_NESTING} levels deep here",
                help="split the expression into named bindings",
            )
        )
    try:
        items = _Builder(file).transform(tree)
    except VisitError as exc:  # Lark wraps what a transformer method raises
        raise exc.orig_exc from None
    imports = tuple(i for i in items if isinstance(i, ast.Import))
    uses = tuple(i for i in items if isinstance(i, ast.Use))
    decls = tuple(i for i in items if isinstance(i, ast.Decl))
    return ParseResult(ast.Module(file, imports, uses, decls))


def comments(text: str) -> list[Comment]:
    """Comments with their positions, for `fmt` (the parser ignores them)."""
    out = []
    for token in _lark().lex(text, dont_ignore=True):
        if token.type == "COMMENT":
            out.append(Comment(token.line, token.column, str(token)))
    return out
