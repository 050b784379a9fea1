"""A ``Query`` written back as VNN-LIB 2.0 text (what ``nnverify query --emit-vnnlib`` writes)."""

from __future__ import annotations

from fractions import Fraction

from nnverify.spec.vnnlib2_types import Constraint, Query, Rel, TensorVar

_DECLARE = {"input": "declare-input", "hidden": "declare-hidden", "output": "declare-output"}


def number(q: Fraction) -> str:
    """``q`` as an exact decimal when it has one (denominator 2^a 5^b), else 20 significant digits."""
    den = q.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{float(q):.20g}"
    digits = 0
    while (q * 10**digits).denominator != 1:
        digits += 1
    scaled = abs(q.numerator * 10**digits // q.denominator)
    text = str(scaled).rjust(digits + 1, "0")
    whole, frac = text[: len(text) - digits], text[len(text) - digits :]
    return ("-" if q < 0 else "") + whole + "." + (frac or "0")


def _element(var: TensorVar, flat: int) -> str:
    if not var.shape:
        return var.name
    index = []
    for dim in reversed(var.shape):
        index.append(flat % dim)
        flat //= dim
    return f"{var.name}[{','.join(map(str, reversed(index)))}]"


def _comparison(c: Constraint, variables: dict[str, TensorVar]) -> str:
    terms = [f"(* {number(coef)} {_element(variables[name], k)})" for (name, k), coef in c.coefs]
    lhs = terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})" if terms else "0.0"
    op = {Rel.LE: "<=", Rel.LT: "<", Rel.EQ: "=="}[c.rel]
    return f"({op} {lhs} {number(c.b)})"


def has_vnnlib2(query: Query) -> str | None:
    """Why ``query`` has no VNN-LIB 2.0 form (composition, auxiliary variables), else None."""
    if any(n.fed_by for n in query.networks):
        return "a composition N(G(z)) has no VNN-LIB 2.0 form"
    if query.auxiliary:
        return "an exact l1 norm of more than 8 elements uses auxiliary variables, which VNN-LIB 2.0 cannot declare"
    return None


def to_vnnlib2(query: Query) -> str:
    """The query as VNN-LIB 2.0: declarations, one assert per shared constraint, one ``or`` of the rest.

    A query with composition or auxiliary variables (``qlang``) has no such form: check ``has_vnnlib2`` first.
    """
    lines = ["(vnnlib-version <2.0>)"]
    for net in query.networks:
        lines.append(f"(declare-network {net.name}")
        if net.equal_to:
            lines.append(f"    (equal-to {net.equal_to})")
        for var in net.tensors:
            onnx = f' "{var.onnx_name}"' if var.onnx_name else ""
            init = " initialized" if var.initialized else ""
            shape = ",".join(map(str, var.shape))
            lines.append(f"    ({_DECLARE[var.kind.value]} {var.name} real [{shape}]{onnx}{init})")
        lines.append(")")
    variables = {v.name: v for v in query.variables}
    lines += [f"(assert {_comparison(c, variables)})" for c in query.common]
    if not query.alternatives:
        lines.append("(assert (< 1.0 0.0))")
    elif len(query.alternatives) > 1 or query.alternatives[0]:
        alts = [" ".join(_comparison(c, variables) for c in alt) for alt in query.alternatives]
        lines.append("(assert (or " + " ".join(f"(and {a})" for a in alts) + "))")
    return "\n".join(lines) + "\n"
