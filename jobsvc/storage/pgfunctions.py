# mypy: disable-error-code="union-attr,arg-type"
# (a token list holds Tok and Group items; each rule checks the kind before it reads the attribute)
"""SQLite's functions in PostgreSQL's words, for jobsvc.storage.pgsql: one call at a time.

SQLite-only functions without a faithful counterpart (date arithmetic, json_extract's typed
results, ...) are refused with UnsupportedSql rather than translated into something else.
"""

from __future__ import annotations

from jobsvc.storage.sqllex import Group, Node, UnsupportedSql, is_op, is_word, significant, split, strip, text

COMPARISONS = frozenset({"=", "==", "<>", "!=", "<", ">", "<=", ">="})
BOOLEAN_WORDS = frozenset("IS IN LIKE ILIKE GLOB BETWEEN EXISTS AND OR NOT SIMILAR ISNULL NOTNULL".split())

UNSUPPORTED_FUNCTIONS = frozenset(
    """strftime datetime date time julianday unixepoch timediff printf format typeof last_insert_rowid changes
    total_changes random randomblob zeroblob hex unhex quote likelihood likely unlikely glob like
    sqlite_version sqlite_source_id json_extract json_set json_insert json_replace json_remove json_patch
    json_each json_tree json_type json_quote json_valid char unicode soundex load_extension""".split()
)
CAST_TYPES = {"INTEGER": "BIGINT", "INT": "BIGINT", "REAL": "DOUBLE PRECISION", "FLOAT": "DOUBLE PRECISION",
              "DOUBLE": "DOUBLE PRECISION", "BLOB": "BYTEA", "TEXT": "TEXT", "NUMERIC": "NUMERIC"}  # fmt: skip


def boolish(nodes: list[Node]) -> bool:
    """Whether an expression is a condition (PostgreSQL's boolean), judged by its top-level operators."""
    sig = [nodes[i] for i in significant(nodes)]
    if len(sig) == 1 and isinstance(sig[0], Group):
        return boolish(sig[0].items)
    return any(is_op(node, *COMPARISONS) or (is_word(node) and node.upper in BOOLEAN_WORDS) for node in sig)


def glob_to_similar(pattern: str) -> str:
    """A GLOB pattern (``*``, ``?``, ``[...]``, ``[^...]``; case-sensitive) as a SIMILAR TO pattern."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[":
            start = index + 1
            if pattern[start : start + 1] == "^":
                start += 1
            if pattern[start : start + 1] == "]":
                start += 1
            end = pattern.find("]", start)
            if end < 0:
                raise UnsupportedSql(f"GLOB pattern with an open '[': {pattern!r}")
            out.append(pattern[index : end + 1].replace("\\", "\\\\"))
            index = end
        elif char in "%_|+{}()\\":
            out.append("\\" + char)
        else:
            out.append(char)
        index += 1
    return "".join(out)


def call(name: str, args: Group) -> str | None:
    """The PostgreSQL text for ``name(args)``, its arguments translated already; None: the call stays."""
    if name in UNSUPPORTED_FUNCTIONS:
        raise UnsupportedSql(f"{name}() is SQLite's own: compute it in Python or write it for both")
    parts = [text(strip(part)) for part in split(args.items)] if significant(args.items) else []
    nargs = len(parts)
    if name == "json_group_array" and nargs == 1:
        return f"COALESCE(json_agg({parts[0]}), '[]'::json)"
    if name == "json_group_object" and nargs == 2:
        return f"COALESCE(json_object_agg({parts[0]}, {parts[1]}), '{{}}'::json)"
    if name in ("json_array", "json_object"):
        return f"json_build_{name[5:]}({', '.join(parts)})"
    if name == "json" and nargs == 1:
        return f"CAST({parts[0]} AS json)"
    if name == "json_array_length" and nargs == 1:
        return f"json_array_length(CAST({parts[0]} AS json))"
    if name in ("max", "min") and nargs >= 2:
        nulls = " OR ".join(f"({part}) IS NULL" for part in parts)
        return f"CASE WHEN {nulls} THEN NULL ELSE {'GREATEST' if name == 'max' else 'LEAST'}({', '.join(parts)}) END"
    condition = name in ("sum", "total", "avg", "max", "min") and nargs == 1 and boolish(args.items)
    if condition:
        parts = [f"CAST(({parts[0]}) AS BIGINT)"]
    if name == "total" and nargs == 1:
        return f"CAST(COALESCE(sum({parts[0]}), 0) AS DOUBLE PRECISION)"
    if name == "avg" and nargs == 1:
        return f"CAST(avg({parts[0]}) AS DOUBLE PRECISION)"
    if condition:
        return f"{name}({parts[0]})"
    if name == "ifnull" and nargs == 2:
        return f"COALESCE({parts[0]}, {parts[1]})"
    if name == "iif" and nargs == 3:
        return f"CASE WHEN {parts[0]} THEN {parts[1]} ELSE {parts[2]} END"
    if name == "instr" and nargs == 2:
        return f"strpos({parts[0]}, {parts[1]})"
    if name == "group_concat" and nargs in (1, 2):
        value, distinct = parts[0], ""
        if value.upper().startswith("DISTINCT "):
            value, distinct = value[9:].lstrip(), "DISTINCT "
        separator = parts[1] if nargs == 2 else "','"
        return f"string_agg({distinct}CAST({value} AS TEXT), {separator})"
    if name == "round" and nargs in (1, 2):
        digits = f", {parts[1]}" if nargs == 2 else ""
        return f"CAST(round(CAST({parts[0]} AS NUMERIC){digits}) AS DOUBLE PRECISION)"
    if name == "cast":
        inner = args.items
        at = max((i for i in significant(inner) if is_word(inner[i], "AS")), default=None)
        if at is None:
            return None
        wanted = text(inner[at + 1 :]).strip().upper()
        return f"CAST({text(inner[:at]).strip()} AS {CAST_TYPES.get(wanted, wanted)})"
    return None
