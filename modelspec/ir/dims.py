"""Symbolic dimensions: sizes like `B`, `T*D` or `(H - 1)//2 + 1` that stay
symbolic through checking and become numbers once the inputs are known.

A `Dim` is a polynomial with integer coefficients over atoms. An atom is a
symbol name or, where division is not exact, an opaque `Floor`/`Mod` of
other dims. Polynomials are kept in one canonical form, so two dims are
equal exactly when their forms are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

Atom = Union[str, "Floor", "Mod"]
Monomial = tuple  # sorted tuple of atoms, with repetition (T*T is ("T", "T"))


def _atom_key(atom) -> str:
    return atom if isinstance(atom, str) else f"~{atom}"


@dataclass(frozen=True)
class Floor:
    """`num // den` where the division is not exact."""

    num: Dim
    den: Dim

    def __str__(self) -> str:
        return f"({self.num})//{self.den.paren()}"


@dataclass(frozen=True)
class Mod:
    num: Dim
    den: Dim

    def __str__(self) -> str:
        return f"({self.num})%{self.den.paren()}"


class Dim:
    __slots__ = ("terms", "_hash")

    def __init__(self, terms: dict | None = None):
        # monomial -> coefficient; zero coefficients are dropped.
        clean = {m: c for m, c in (terms or {}).items() if c != 0}
        object.__setattr__(self, "terms", tuple(sorted(clean.items(), key=lambda mc: _mono_key(mc[0]))))
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name, value):
        raise AttributeError("Dim is immutable")

    # ---- construction
    @staticmethod
    def const(value: int) -> Dim:
        return Dim({(): int(value)})

    @staticmethod
    def sym(name: Atom) -> Dim:
        return Dim({(name,): 1})

    @staticmethod
    def of(value: int | Dim) -> Dim:
        return value if isinstance(value, Dim) else Dim.const(value)

    # ---- inspection
    @property
    def is_const(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def value(self) -> int:
        """The integer value; only for constant dims."""
        if not self.is_const:
            raise ValueError(f"dimension {self} is symbolic")
        return self.terms[0][1] if self.terms else 0

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for mono, _ in self.terms:
            for atom in mono:
                if isinstance(atom, str):
                    out.add(atom)
                else:
                    out |= atom.num.symbols() | atom.den.symbols()
        return out

    # ---- arithmetic
    def __add__(self, other) -> Dim:
        other = Dim.of(other)
        terms = dict(self.terms)
        for m, c in other.terms:
            terms[m] = terms.get(m, 0) + c
        return Dim(terms)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return Dim({m: -c for m, c in self.terms})

    def __sub__(self, other) -> Dim:
        return self + (-Dim.of(other))

    def __rsub__(self, other) -> Dim:
        return Dim.of(other) - self

    def __mul__(self, other) -> Dim:
        other = Dim.of(other)
        terms: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2, key=_atom_key))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Dim(terms)

    __rmul__ = __mul__

    def __pow__(self, exponent: int) -> Dim:
        result = Dim.const(1)
        for _ in range(exponent):
            result = result * self
        return result

    def exact_div(self, other) -> Dim | None:
        """`self / other` when it divides exactly as polynomials, else None."""
        other = Dim.of(other)
        if len(other.terms) != 1:
            return Dim.const(1) if other == self else None
        ((dmono, dcoef),) = other.terms
        if dcoef == 0:
            return None
        terms = {}
        for mono, coef in self.terms:
            rest = list(mono)
            for atom in dmono:
                if atom not in rest:
                    return None
                rest.remove(atom)
            if coef % dcoef:
                return None
            terms[tuple(rest)] = coef // dcoef
        return Dim(terms)

    def __floordiv__(self, other) -> Dim:
        other = Dim.of(other)
        if self.is_const and other.is_const:
            return Dim.const(self.value // other.value)
        exact = self.exact_div(other)
        if exact is not None:
            return exact
        return Dim.sym(Floor(self, other))

    def __rfloordiv__(self, other) -> Dim:
        return Dim.of(other) // self

    def __mod__(self, other) -> Dim:
        other = Dim.of(other)
        if self.is_const and other.is_const:
            return Dim.const(self.value % other.value)
        if self.exact_div(other) is not None:
            return Dim.const(0)
        return Dim.sym(Mod(self, other))

    def __rmod__(self, other) -> Dim:
        return Dim.of(other) % self

    # ---- evaluation
    def substitute(self, bindings: dict[str, int | Dim]) -> Dim:
        """Replace symbols by values (ints or dims); opaque atoms are re-evaluated."""
        result = Dim()
        for mono, coef in self.terms:
            term = Dim.const(coef)
            for atom in mono:
                if isinstance(atom, str):
                    term = term * Dim.of(bindings[atom]) if atom in bindings else term * Dim.sym(atom)
                elif isinstance(atom, Floor):
                    term = term * (atom.num.substitute(bindings) // atom.den.substitute(bindings))
                else:
                    term = term * (atom.num.substitute(bindings) % atom.den.substitute(bindings))
            result = result + term
        return result

    # ---- comparison
    def __eq__(self, other) -> bool:
        if isinstance(other, int) and not isinstance(other, bool):
            other = Dim.const(other)
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(self.terms))
        return self._hash

    # ---- printing
    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for i, (mono, coef) in enumerate(reversed(self.terms)):
            alone = len(mono) == 1 and abs(coef) == 1
            names = "*".join(_atom_text(a, alone) for a in mono)
            if mono == ():
                body = str(abs(coef))
            elif abs(coef) == 1:
                body = names
            else:
                body = f"{abs(coef)}*{names}"
            if i == 0:
                parts.append(("-" if coef < 0 else "") + body)
            else:
                parts.append((" - " if coef < 0 else " + ") + body)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Dim({self})"

    def paren(self) -> str:
        """Text fit to stand as an operand of `*` or `//`."""
        text = str(self)
        return text if len(self.terms) <= 1 and not text.startswith("-") else f"({text})"


def _mono_key(mono) -> tuple:
    # Higher-degree monomials last, so `str` prints them first: `T*T + 2*T + 1`.
    return (len(mono), [_atom_key(a) for a in mono])


def _atom_text(atom, alone: bool) -> str:
    if isinstance(atom, str):
        return atom
    # `B*((T + 1)//2)`: a floor inside a product needs its own parentheses.
    return str(atom) if alone else f"({atom})"


def dim_text(dim: int | Dim) -> str:
    return str(dim)


def as_int(dim: int | Dim) -> int | None:
    """The value of a dim when it is a known number, else None."""
    if isinstance(dim, Dim):
        return dim.value if dim.is_const else None
    return int(dim)


def parse_dim(text: str) -> Dim:
    """Read back the text `str(dim)` writes (for the IR's JSON form)."""
    import re

    tokens = re.findall(r"\d+|[A-Za-z_][A-Za-z0-9_]*|//|[-+*%()]", text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr() -> Dim:
        sign = 1
        if peek() == "-":
            take()
            sign = -1
        value = term() * sign
        while peek() in ("+", "-"):
            op = take()
            value = value + term() if op == "+" else value - term()
        return value

    def term() -> Dim:
        value = atom()
        while peek() in ("*", "//", "%"):
            op = take()
            right = atom()
            value = value * right if op == "*" else (value // right if op == "//" else value % right)
        return value

    def atom() -> Dim:
        token = take()
        if token == "(":
            value = expr()
            take()  # ")"
            return value
        if token.isdigit():
            return Dim.const(int(token))
        return Dim.sym(token)

    result = expr()
    if pos != len(tokens):
        raise ValueError(f"cannot read dimension {text!r}")
    return result
