# mypy: disable-error-code="union-attr,arg-type"
# (a token list holds Tok and Group items; each rule checks the kind before it reads the attribute)
"""SQLite's dialect, as jobsvc writes it, translated to PostgreSQL's, so every statement runs on both.

What changes (each rule has its row in tests/test_pgsql.py):

- parameters: ``?``, ``?N``, ``:name``, ``@name``, ``$name`` become ``$n`` (strings, quoted names,
  comments and ``::`` casts are left alone); the Translation says which name each ``$n`` binds
- ``INSERT OR IGNORE`` -> ``ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE``/``REPLACE`` -> an upsert on the
  primary key; ``Tx.insert`` gets ``RETURNING id``; an INSERT that names ``id`` is flagged, so the store
  moves the id sequence past it
- ``LIKE`` is ASCII case-insensitive in SQLite and has no escape character unless given: ``ILIKE``, with
  ``ESCAPE ''`` unless the statement names one; ``GLOB`` with a literal pattern -> ``SIMILAR TO``
- ``a IS b`` / ``a IS NOT b`` for anything but NULL/TRUE/FALSE -> ``IS [NOT] DISTINCT FROM``; ``==`` -> ``=``
- booleans are 0/1 integers: an integer column standing alone as a condition -> ``(col <> 0)``; a
  comparison summed, or stored into an integer column -> ``CAST(... AS BIGINT)``; TRUE/FALSE outside
  conditions -> 1/0 (the store turns boolean results into 0/1 too)
- functions: ``json_group_array``/``json_group_object`` -> ``json_agg``/``json_object_agg`` (``[]``/``{}``
  when empty), ``json_array``/``json_object`` -> ``json_build_*``, ``json()``, ``json_array_length``;
  scalar ``max(a, b)``/``min(a, b)`` -> ``GREATEST``/``LEAST`` (NULL if any argument is, as in SQLite);
  ``ifnull``, ``iif``, ``instr``, ``group_concat``, ``total``, ``avg`` and ``round`` (real results),
  ``CAST(x AS INTEGER)`` (64-bit); SQLite-only functions (``strftime``, ``datetime``, ``json_extract``, ...)
  are refused with UnsupportedSql rather than translated into something else
- ``a || b`` concatenates text whatever a and b are: each operand is cast to TEXT
- a subquery in FROM gets the alias PostgreSQL (before 16) insists on
- ``ORDER BY``: SQLite puts NULLs first ascending and last descending; unless the column is NOT NULL,
  ``NULLS FIRST``/``NULLS LAST`` says so
- ``LIMIT -1`` -> ``LIMIT ALL``; ``LIMIT a, b`` -> ``LIMIT b OFFSET a``; ``COLLATE BINARY`` -> ``"C"``
- a bare parameter in a compound SELECT takes the type of the matching column in another arm (the
  anchor of a recursive CTE: ``SELECT ? UNION ALL SELECT p.id ...``)
- result names: SQLite names an unnamed result column by its text (``count(*)``), PostgreSQL by its
  function (``count``); such columns get an alias and the Translation maps it back, so the rows of both
  stores have the same keys; an alias in mixed case keeps its case

Timestamps stay ISO-8601 text (schema.postgres.sql declares TEXT COLLATE "C"), so they compare and
order as in SQLite. Translations are cached by the statement's text.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobsvc.storage.pgfunctions import COMPARISONS, boolish, call, glob_to_similar
from jobsvc.storage.sqllex import (
    Group,
    Node,
    Tok,
    UnsupportedSql,
    first_word,
    is_op,
    is_word,
    parse,
    significant,
    split,
    strip,
    text,
    walk,
)

__all__ = ["Column", "Schema", "Translation", "Translator", "UnsupportedSql"]

INTEGER_TYPES = frozenset({"bigint", "integer", "smallint"})

# words that end an operand, a pattern or an alias position
KEYWORDS = frozenset(
    """ALL AND AS ASC BETWEEN BY CASE CAST COLLATE CROSS DEFAULT DELETE DESC DISTINCT DO ELSE END ESCAPE
    EXCEPT EXISTS FALSE FIRST FOR FROM FULL GLOB GROUP HAVING ILIKE IN INNER INSERT INTERSECT INTO IS ISNULL
    JOIN LAST LEFT LIKE LIMIT NATURAL NOT NOTHING NOTNULL NULL NULLS OFFSET ON OR ORDER OUTER OVER RECURSIVE
    REPLACE RETURNING RIGHT SELECT SET SIMILAR THEN TO TRUE UNION UPDATE USING VALUES WHEN WHERE WINDOW
    WITH""".split()
)
CLAUSES = frozenset(
    "WHERE GROUP ORDER LIMIT OFFSET HAVING UNION EXCEPT INTERSECT RETURNING WINDOW ON USING SET VALUES".split()
)
FROM_END = CLAUSES - {"ON", "USING"}  # what ends a FROM list (ON and USING only end one of its joins)
CONDITION_BEFORE = frozenset("WHERE AND OR NOT ON HAVING WHEN".split())
CONDITION_AFTER = frozenset(
    "AND OR THEN ORDER GROUP LIMIT HAVING UNION EXCEPT INTERSECT RETURNING WINDOW WHERE JOIN LEFT INNER CROSS".split()
)
PATTERN_END = KEYWORDS - {"CASE", "CAST", "EXISTS", "NULL", "TRUE", "FALSE"}
STATEMENTS_REFUSED = frozenset("PRAGMA ATTACH DETACH VACUUM BEGIN COMMIT END ROLLBACK SAVEPOINT RELEASE".split())


@dataclass(frozen=True)
class Column:
    type: str  # PostgreSQL's name for it (format_type): bigint, text, citext, double precision
    not_null: bool


@dataclass(frozen=True)
class Schema:
    """What the translator needs to know of the tables: their columns, primary keys and id sequences."""

    tables: Mapping[str, Mapping[str, Column]]
    primary_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sequences: Mapping[str, str] = field(default_factory=dict)  # table -> the sequence behind its id


@dataclass(frozen=True)
class Translation:
    sql: str
    names: tuple[str, ...] | None  # named parameters: the name each $n binds; None: positional
    count: int  # positional parameters
    table: str | None = None  # the table an INSERT writes
    explicit_id: bool = False  # an INSERT that gives the id itself
    returns_id: bool = False  # ends in RETURNING id (Tx.insert)
    renames: Mapping[str, str] = field(default_factory=dict)  # result column: PostgreSQL's key -> SQLite's

    def bind(self, params: object) -> list[object]:
        """The parameters as $1, $2, ...: from a mapping by name, or from a sequence by position."""
        if self.names is not None:
            if not isinstance(params, Mapping):
                raise TypeError("this statement has named parameters: pass a mapping")
            try:
                return [params[name] for name in self.names]
            except KeyError as exc:
                raise TypeError(f"no value for parameter :{exc.args[0]}") from None
        if isinstance(params, Mapping):
            if self.count:
                raise TypeError("this statement has positional parameters: pass a sequence")
            return []
        values = list(params)  # type: ignore[call-overload]
        if len(values) != self.count:
            raise TypeError(f"the statement uses {self.count} parameters, and {len(values)} were supplied")
        return values


def _w(word: str) -> Tok:
    return Tok("word", word)


def _sp() -> Tok:
    return Tok("ws", " ")


def _nodes(sql: str) -> list[Node]:
    return parse(sql).items


def _ident(node: Node) -> str:
    """An identifier's name as PostgreSQL folds it for lookups in the schema."""
    assert isinstance(node, Tok)
    if node.kind == "qid":
        return node.text[1:-1].replace('""', '"').lower()
    return node.text.lower()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_name(node: Node | None) -> bool:
    """A word that can name a table, a column or an alias (not a keyword), or a quoted identifier."""
    return isinstance(node, Tok) and (node.kind == "qid" or (node.kind == "word" and node.upper not in KEYWORDS))


def _colref(nodes: list[Node]) -> tuple[str | None, str] | None:
    """``col`` or ``t.col``: (qualifier, column); None for anything else."""
    sig = [nodes[i] for i in significant(nodes)]
    if len(sig) == 1 and _is_name(sig[0]):
        return None, _ident(sig[0])
    if len(sig) == 3 and _is_name(sig[0]) and is_op(sig[1], ".") and _is_name(sig[2]):
        return _ident(sig[0]), _ident(sig[2])
    return None


class _Context:
    def __init__(self) -> None:
        self.aliases = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"_sq{self.aliases}"


class Translator:
    """SQLite statements to PostgreSQL, for one schema; ``translate`` caches by text."""

    def __init__(self, schema: Schema, cache_size: int = 4096):
        self.schema = schema
        self.translate = functools.lru_cache(maxsize=cache_size)(self._translate)

    # --- the statement ------------------------------------------------------------------------------------

    def _translate(self, sql: str, returning_id: bool = False) -> Translation:
        tree = parse(sql)
        self._one_statement(tree)
        sig = significant(tree.items)
        verb = tree.items[sig[0]].upper if sig else ""
        if verb in STATEMENTS_REFUSED:
            raise UnsupportedSql(f"{verb} has no place in a statement of the store")
        renames = self._name_results(tree) if verb in ("SELECT", "WITH") else {}
        names, count = self._number_parameters(tree)
        insert = self._insert_head(tree) if verb in ("INSERT", "REPLACE") else None
        tree.items = self._rewrite(tree.items, (), _Context())
        if verb == "UPDATE":
            self._update_values(tree.items)
        table, explicit_id, returns_id = None, False, False
        if insert is not None:
            table, columns, conflict = insert
            self._insert_values(tree.items, table, columns)
            self._insert_tail(tree.items, table, columns, conflict)
            explicit_id = "id" in columns
            if returning_id and "id" in self.schema.tables.get(table, {}):
                if not self._has_returning(tree.items):
                    tree.items += [_sp(), _w("RETURNING"), _sp(), _w("id")]
                returns_id = True
        return Translation(text(tree.items), names, count, table, explicit_id, returns_id, renames)

    @staticmethod
    def _one_statement(tree: Group) -> None:
        sig = significant(tree.items)
        for position, index in enumerate(sig):
            if is_op(tree.items[index], ";"):
                if position != len(sig) - 1:
                    raise UnsupportedSql("one statement at a time")
                del tree.items[index]

    @staticmethod
    def _number_parameters(tree: Group) -> tuple[tuple[str, ...] | None, int]:
        """SQLite's numbering: ``?`` is one more than the highest so far, ``?N`` is N, each name its own."""
        positional, named = 0, []
        for group, index, tok in list(walk(tree)):
            if tok.kind == "pgparam":
                raise UnsupportedSql(f"{tok.text}: write ? or :name")
            if tok.kind != "param":
                continue
            if tok.text[0] == "?":
                number = int(tok.text[1:]) if len(tok.text) > 1 else positional + 1
                positional = max(positional, number)
            else:
                name = tok.text[1:]
                if name not in named:
                    named.append(name)
                number = named.index(name) + 1
            group.items[index] = Tok("pgparam", f"${number}")
        if positional and named:
            raise UnsupportedSql("positional and named parameters in one statement")
        return (tuple(named) if named else None), positional

    def _name_results(self, tree: Group) -> dict[str, str]:
        """Alias the unnamed result columns of the statement's SELECT; returns alias -> SQLite's name."""
        items = tree.items
        start = next((i for i in significant(items) if is_word(items[i], "SELECT")), None)
        if start is None:
            return {}
        ranges = self._select_items(items, start)
        renames: dict[str, str] = {}
        for position, (first, last) in reversed(list(enumerate(ranges))):
            nodes = items[first : last + 1]
            sig = [nodes[i] for i in significant(nodes)]
            if is_op(sig[-1], "*"):
                continue
            alias = self._alias_of(sig)
            if alias is not None:
                if alias.kind == "word" and alias.text != alias.text.lower():
                    alias.kind, alias.text = "qid", _quote(alias.text)  # SQLite keeps an alias's case
                continue
            if _colref(nodes) is not None:
                continue  # both name it by its column
            key = f"_c{position + 1}"
            renames[key] = text(nodes)
            items[last + 1 : last + 1] = [_sp(), _w("AS"), _sp(), Tok("qid", _quote(key))]
        return renames

    @staticmethod
    def _alias_of(sig: list[Node]) -> Tok | None:
        if len(sig) >= 3 and is_word(sig[-2], "AS") and isinstance(sig[-1], Tok):
            return sig[-1]
        if len(sig) >= 2 and _is_name(sig[-1]) and not is_op(sig[-2], ".") and not is_word(sig[-2], "COLLATE"):
            before = sig[-2]
            if isinstance(before, Group) or before.kind in ("word", "qid", "str", "num", "pgparam", "param"):
                if not (is_word(before) and before.upper in KEYWORDS - {"END", "NULL", "TRUE", "FALSE"}):
                    assert isinstance(sig[-1], Tok)
                    return sig[-1]
        return None

    @staticmethod
    def _select_items(items: list[Node], select: int) -> list[tuple[int, int]]:
        """The (first, last) index of each item of the select list that starts after ``items[select]``."""
        sig = [i for i in significant(items) if i > select]
        if sig and is_word(items[sig[0]], "DISTINCT", "ALL"):
            sig = sig[1:]
        ranges, first, last = [], None, None
        for index in sig:
            node = items[index]
            if is_word(node, "FROM") or (is_word(node) and node.upper in CLAUSES):
                break
            if is_op(node, ","):
                if first is not None:
                    ranges.append((first, last))
                first = last = None
                continue
            first = index if first is None else first
            last = index
        if first is not None:
            ranges.append((first, last))
        return ranges  # type: ignore[return-value]

    # --- INSERT ----------------------------------------------------------------------------------------------

    def _insert_head(self, tree: Group) -> tuple[str, list[str], str | None]:
        """Drop ``OR x`` (REPLACE INTO becomes INSERT INTO); the table, the columns named and the conflict."""
        items = tree.items
        sig = significant(items)
        conflict = None
        if is_word(items[sig[0]], "REPLACE"):
            items[sig[0]] = _w("INSERT")
            conflict = "REPLACE"
        elif is_word(items[sig[1]], "OR"):
            conflict = items[sig[2]].upper
            if conflict in ("ROLLBACK", "FAIL"):
                raise UnsupportedSql(f"INSERT OR {conflict}")
            del items[sig[1] : sig[3]]  # OR and the word, up to INTO
            conflict = None if conflict == "ABORT" else conflict
        sig = significant(items)
        into = next(i for i in sig if is_word(items[i], "INTO"))
        after = [i for i in sig if i > into]
        table_at = after[0]
        if len(after) > 2 and is_op(items[after[1]], "."):  # main.table
            table_at = after[2]
        table = _ident(items[table_at])
        columns: list[str] = []
        rest = [i for i in after if i > table_at]
        if rest and is_word(items[rest[0]], "AS"):
            rest = rest[2:]
        if (
            rest
            and isinstance(items[rest[0]], Group)
            and first_word(items[rest[0]]) not in ("SELECT", "WITH", "VALUES")
        ):
            group = items[rest[0]]
            assert isinstance(group, Group)
            columns = [_ident(strip(part)[0]) for part in split(group.items)]
        return table, columns, conflict

    def _insert_values(self, items: list[Node], table: str, columns: list[str]) -> None:
        """A condition stored into an integer column is stored as 0/1."""
        sig = significant(items)
        values = next((i for i in sig if is_word(items[i], "VALUES")), None)
        if values is None or not columns:
            return
        for index in sig:
            group = items[index]
            if index > values and isinstance(group, Group):
                parts = split(group.items)
                for position, part in enumerate(parts):
                    if position < len(columns):
                        parts[position] = self._as_integer(part, table, columns[position])
                group.items = [node for k, part in enumerate(parts) for node in ([Tok("op", ",")] if k else []) + part]

    def _update_values(self, items: list[Node]) -> None:
        sig = significant(items)
        table = _ident(items[sig[1]]) if len(sig) > 1 else ""
        at = next((i for i in sig if is_word(items[i], "SET")), None)
        if at is None:
            return
        end = next((i for i in sig if i > at and is_word(items[i], "WHERE", "FROM", "RETURNING")), len(items))
        parts = split(items[at + 1 : end])
        for position, part in enumerate(parts):
            eq = next((k for k, node in enumerate(part) if is_op(node, "=")), None)
            if eq is not None:
                target = strip(part[:eq])
                if len(target) == 1:
                    parts[position] = part[: eq + 1] + self._as_integer(part[eq + 1 :], table, _ident(target[0]))
        joined = [node for k, part in enumerate(parts) for node in ([Tok("op", ",")] if k else []) + part]
        items[at + 1 : end] = joined

    def _as_integer(self, part: list[Node], table: str, column: str) -> list[Node]:
        found = self.schema.tables.get(table, {}).get(column)
        if found is None or found.type not in INTEGER_TYPES or not boolish(part):
            return part
        return [_sp(), _w("CAST"), Group([Group(strip(part)), _sp(), _w("AS"), _sp(), _w("BIGINT")])]

    @staticmethod
    def _has_returning(items: list[Node]) -> bool:
        return any(is_word(items[i], "RETURNING") for i in significant(items))

    def _insert_tail(self, items: list[Node], table: str, columns: list[str], conflict: str | None) -> None:
        if conflict is None:
            return
        sig = significant(items)
        if any(is_word(items[a], "ON") and is_word(items[b], "CONFLICT") for a, b in zip(sig, sig[1:], strict=False)):
            raise UnsupportedSql(f"INSERT OR {conflict} with an ON CONFLICT clause of its own")
        if conflict == "IGNORE":
            clause = "ON CONFLICT DO NOTHING"
        elif conflict == "REPLACE":
            key = self.schema.primary_keys.get(table)
            if not key or not columns:
                raise UnsupportedSql(f"INSERT OR REPLACE INTO {table}: needs its column list and a primary key")
            updates = [f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in columns if c not in key]
            target = ", ".join(_quote(c) for c in key)
            clause = f"ON CONFLICT ({target}) " + (f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING")
        else:
            raise UnsupportedSql(f"INSERT OR {conflict}")
        returning = next((p for p, i in enumerate(sig) if is_word(items[i], "RETURNING")), len(sig))
        at = sig[returning - 1] + 1  # after the last word before RETURNING (or of all)
        items[at:at] = [_sp(), *_nodes(clause)]

    # --- every level ---------------------------------------------------------------------------------------

    def _rewrite(self, items: list[Node], outer: tuple[dict[str, str], ...], ctx: _Context) -> list[Node]:
        scope = (self._tables(items), *outer)
        for node in items:
            if isinstance(node, Group):
                node.items = self._rewrite(node.items, scope, ctx)
        items = self._words(items)
        items = self._functions(items)
        items = self._is(items)
        items = self._like(items)
        items = self._concat(items)
        items = self._subquery_aliases(items, ctx)
        items = self._limit(items)
        items = self._order_by(items, scope)
        items = self._conditions(items, scope)
        items = self._compound_parameters(items, outer)
        return items

    @staticmethod
    def _tables(items: list[Node]) -> dict[str, str]:
        """The tables this level reads or writes: alias (and name) -> table."""
        found: dict[str, str] = {}
        sig = [items[i] for i in significant(items)]
        in_from = False
        for index, node in enumerate(sig):
            starts = is_word(node, "FROM", "JOIN", "UPDATE", "INTO") or (in_from and is_op(node, ","))
            if is_word(node, "FROM", "JOIN"):
                in_from = True
            elif is_word(node) and node.upper in FROM_END | {"SELECT"}:
                in_from = False
            if not starts or index + 1 >= len(sig) or not _is_name(sig[index + 1]):
                continue
            at = index + 1
            if at + 2 < len(sig) and is_op(sig[at + 1], ".") and _is_name(sig[at + 2]):
                at += 2
            table = _ident(sig[at])
            alias_at = at + 2 if at + 2 < len(sig) and is_word(sig[at + 1], "AS") else at + 1
            alias = _ident(sig[alias_at]) if alias_at < len(sig) and _is_name(sig[alias_at]) else table
            found[alias] = table
            found.setdefault(table, table)
        return found

    def _column(self, scope: tuple[dict[str, str], ...], ref: tuple[str | None, str]) -> Column | None:
        qualifier, name = ref
        for level in scope:
            if qualifier is not None:
                if qualifier in level:
                    return self.schema.tables.get(level[qualifier], {}).get(name)
                continue
            hits = {t for t in level.values() if name in self.schema.tables.get(t, {})}
            if len(hits) == 1:
                return self.schema.tables[hits.pop()][name]
            if hits:
                return None
        return None

    @staticmethod
    def _words(items: list[Node]) -> list[Node]:
        """``==``; TRUE/FALSE as 0/1 outside conditions; COLLATE BINARY; SQLite-only collations refused."""
        sig = significant(items)
        for position, index in enumerate(sig):
            node = items[index]
            before = items[sig[position - 1]] if position else None
            if is_op(node, "=="):
                items[index] = Tok("op", "=")
            elif is_word(node, "TRUE", "FALSE") and not (is_word(before) and before.upper in CONDITION_BEFORE | {"IS"}):
                items[index] = Tok("num", "1" if node.upper == "TRUE" else "0")
            elif is_word(before, "COLLATE") and isinstance(node, Tok):
                name = _ident(node).upper()
                if name == "BINARY":
                    items[index] = Tok("qid", '"C"')
                elif name in ("NOCASE", "RTRIM"):
                    raise UnsupportedSql(f"COLLATE {name}: declare the column citext in schema.postgres.sql")
        return items

    def _functions(self, items: list[Node]) -> list[Node]:
        sig = significant(items)
        for position in range(len(sig) - 2, -1, -1):
            index, after = sig[position], sig[position + 1]
            node, args = items[index], items[after]
            if not (is_word(node) and isinstance(args, Group)) or (position and is_op(items[sig[position - 1]], ".")):
                continue
            name = node.text.lower()
            replacement = call(name, args)
            if replacement is not None:
                items[index : after + 1] = [Group(_nodes(replacement))]
        return items

    @staticmethod
    def _is(items: list[Node]) -> list[Node]:
        sig = significant(items)
        for position in range(len(sig) - 2, -1, -1):
            index = sig[position]
            if not is_word(items[index], "IS"):
                continue
            negated = is_word(items[sig[position + 1]], "NOT")
            if negated and position + 2 >= len(sig):
                continue
            target = sig[position + 2] if negated else sig[position + 1]
            if is_word(items[target], "NULL", "TRUE", "FALSE", "UNKNOWN", "DISTINCT"):
                continue
            words = "IS DISTINCT FROM" if negated else "IS NOT DISTINCT FROM"
            items[index:target] = [*_nodes(words), _sp()]
        return items

    @staticmethod
    def _like(items: list[Node]) -> list[Node]:
        sig = significant(items)
        for position in range(len(sig) - 1, -1, -1):
            index = sig[position]
            if is_word(items[index], "GLOB"):
                pattern = items[sig[position + 1]] if position + 1 < len(sig) else None
                if not (isinstance(pattern, Tok) and pattern.kind == "str"):
                    raise UnsupportedSql("GLOB needs a literal pattern")
                value = glob_to_similar(pattern.text[1:-1].replace("''", "'"))
                items[sig[position + 1]] = Tok("str", "'" + value.replace("'", "''") + "'")
                items[index : index + 1] = _nodes("SIMILAR TO")
            elif is_word(items[index], "LIKE"):
                end = next(
                    (k for k in sig[position + 1 :]
                     if (is_word(items[k]) and items[k].upper in PATTERN_END)
                     or is_op(items[k], *COMPARISONS, ",", ";")),
                    None,
                )  # fmt: skip
                if end is None or not is_word(items[end], "ESCAPE"):
                    stop = (sig[sig.index(end) - 1] if end is not None else sig[-1]) + 1
                    items[stop:stop] = [_sp(), *_nodes("ESCAPE ''")]
                items[index] = _w("ILIKE")
        return items

    @staticmethod
    def _operand_end(items: list[Node], sig: list[int], at: int) -> int:
        """The position in ``sig`` of the last node of the operand that starts at position ``at``."""
        node = items[sig[at]]
        if is_op(node, "-", "+", "~") and at + 1 < len(sig):
            return Translator._operand_end(items, sig, at + 1)
        if is_word(node, "CASE"):
            depth = 0
            for k in range(at, len(sig)):
                depth += is_word(items[sig[k]], "CASE") - is_word(items[sig[k]], "END")
                if depth == 0:
                    return k
        if (_is_name(node) or is_word(node, "CAST", "EXISTS")) and at + 1 < len(sig):
            if isinstance(items[sig[at + 1]], Group):
                return at + 1
            end = at
            while end + 2 < len(sig) and is_op(items[sig[end + 1]], ".") and _is_name(items[sig[end + 2]]):
                end += 2
            return end
        return at

    @staticmethod
    def _operand_start(items: list[Node], sig: list[int], at: int) -> int:
        node = items[sig[at]]
        if is_word(node, "END"):
            depth = 0
            for k in range(at, -1, -1):
                depth += is_word(items[sig[k]], "END") - is_word(items[sig[k]], "CASE")
                if depth == 0:
                    return k
        if isinstance(node, Group) and at and (_is_name(items[sig[at - 1]]) or is_word(items[sig[at - 1]], "CAST")):
            return at - 1
        start = at
        while start >= 2 and is_op(items[sig[start - 1]], ".") and _is_name(items[sig[start - 2]]):
            start -= 2
        return start

    def _concat(self, items: list[Node]) -> list[Node]:
        sig = significant(items)
        spans: set[tuple[int, int]] = set()
        for position, index in enumerate(sig):
            if is_op(items[index], "||") and 0 < position < len(sig) - 1:
                spans.add((self._operand_start(items, sig, position - 1), position - 1))
                spans.add((position + 1, self._operand_end(items, sig, position + 1)))
        for first, last in sorted(spans, reverse=True):
            nodes = items[sig[first] : sig[last] + 1]
            if len(nodes) == 1 and isinstance(nodes[0], Tok) and nodes[0].kind == "str":
                continue
            items[sig[first] : sig[last] + 1] = [_w("CAST"), Group([*nodes, _sp(), _w("AS"), _sp(), _w("TEXT")])]
        return items

    @staticmethod
    def _subquery_aliases(items: list[Node], ctx: _Context) -> list[Node]:
        sig = significant(items)
        in_from = False
        for position in range(len(sig)):
            node = items[sig[position]]
            before = items[sig[position - 1]] if position else None
            if is_word(node, "FROM", "JOIN"):
                in_from = True
            elif is_word(node) and node.upper in FROM_END | {"SELECT"}:
                in_from = False
            if not (isinstance(node, Group) and first_word(node) in ("SELECT", "WITH", "VALUES")):
                continue
            if not (is_word(before, "FROM", "JOIN") or (in_from and is_op(before, ","))):
                continue
            following = items[sig[position + 1]] if position + 1 < len(sig) else None
            if is_word(following, "AS") or _is_name(following):
                continue
            at = sig[position] + 1
            items[at:at] = [_sp(), _w("AS"), _sp(), _w(ctx.alias())]
            sig = significant(items)
        return items

    @staticmethod
    def _limit(items: list[Node]) -> list[Node]:
        sig = significant(items)
        at = next((p for p, i in enumerate(sig) if is_word(items[i], "LIMIT")), None)
        if at is None or at + 1 >= len(sig):
            return items
        first = items[sig[at + 1]]
        if is_op(first, "-") and at + 2 < len(sig) and isinstance(items[sig[at + 2]], Tok):
            items[sig[at + 1] : sig[at + 2] + 1] = [_w("ALL")]
        elif at + 3 < len(sig) and is_op(items[sig[at + 2]], ","):
            offset, count = items[sig[at + 1]], items[sig[at + 3]]
            items[sig[at + 1] : sig[at + 3] + 1] = [count, _sp(), _w("OFFSET"), _sp(), offset]
        return items

    def _order_by(self, items: list[Node], scope: tuple[dict[str, str], ...]) -> list[Node]:
        sig = significant(items)
        at = next(
            (p for p in range(len(sig) - 1) if is_word(items[sig[p]], "ORDER") and is_word(items[sig[p + 1]], "BY")),
            None,
        )
        if at is None:
            return items
        start = sig[at + 1] + 1
        end = next(
            (i for i in sig[at + 2 :] if is_word(items[i], "LIMIT", "OFFSET", "ROWS", "RANGE", "GROUPS", "RETURNING")),
            len(items),
        )
        terms = split(items[start:end])
        for term in terms:
            nodes = strip(term)
            if not nodes:
                continue
            words = [n.upper if is_word(n) else "" for n in nodes if not (isinstance(n, Tok) and n.kind == "ws")]
            if "NULLS" in words:
                continue
            direction = words[-1] if words and words[-1] in ("ASC", "DESC") else "ASC"
            expression = nodes[:-1] if words and words[-1] in ("ASC", "DESC") else nodes
            ref = _colref(expression)
            column = self._column(scope, ref) if ref is not None else None
            if column is not None and column.not_null:
                continue
            tail = [_sp(), _w("NULLS"), _sp(), _w("FIRST" if direction == "ASC" else "LAST")]
            where = significant(term)[-1] + 1
            term[where:where] = tail
        items[start:end] = [node for k, term in enumerate(terms) for node in ([Tok("op", ",")] if k else []) + term]
        return items

    def _conditions(self, items: list[Node], scope: tuple[dict[str, str], ...]) -> list[Node]:
        """An integer column alone as a condition (SQLite: true unless 0) -> ``(col <> 0)``."""
        sig = significant(items)
        position = 0
        while position < len(sig):
            last = position
            if _is_name(items[sig[position]]):
                while last + 2 < len(sig) and is_op(items[sig[last + 1]], ".") and _is_name(items[sig[last + 2]]):
                    last += 2
            else:
                position += 1
                continue
            before = items[sig[position - 1]] if position else None
            after = items[sig[last + 1]] if last + 1 < len(sig) else None
            lead = is_word(before) and before.upper in CONDITION_BEFORE
            follow = after is None or (is_word(after) and after.upper in CONDITION_AFTER)
            if (lead and follow) or (before is None and is_word(after, "AND", "OR")):
                nodes = items[sig[position] : sig[last] + 1]
                ref = _colref(nodes)
                column = self._column(scope, ref) if ref is not None else None
                if column is not None and column.type in INTEGER_TYPES:
                    items[sig[position] : sig[last] + 1] = [Group([*nodes, *_nodes(" <> 0")])]
                    sig = significant(items)
                    last = position
            position = last + 1
        return items

    def _compound_parameters(self, items: list[Node], outer: tuple[dict[str, str], ...]) -> list[Node]:
        """``SELECT ? UNION ALL SELECT p.id ...``: the parameter takes the type of p.id."""
        sig = significant(items)
        cuts = [p for p, i in enumerate(sig) if is_word(items[i], "UNION", "EXCEPT", "INTERSECT")]
        if not cuts:
            return items
        bounds = list(zip([-1, *cuts], [*cuts, len(sig)], strict=True))
        arms = []
        for low, high in bounds:
            select = next((sig[p] for p in range(low + 1, high) if is_word(items[sig[p]], "SELECT")), None)
            if select is None:
                return items
            stop = sig[high] if high < len(sig) else len(items)
            arm_scope = (self._tables(items[select:stop]), *outer)
            ranges = [(a, b) for a, b in self._select_items(items, select) if b < stop]
            arms.append((arm_scope, ranges))
        casts: dict[int, str] = {}
        for position in range(max(len(ranges) for _, ranges in arms)):
            types = set()
            for arm_scope, ranges in arms:
                if position < len(ranges):
                    ref = _colref(items[ranges[position][0] : ranges[position][1] + 1])
                    column = self._column(arm_scope, ref) if ref is not None else None
                    if column is not None:
                        types.add(column.type)
            if len(types) != 1:
                continue
            for _, ranges in arms:
                if position < len(ranges):
                    first, last = ranges[position]
                    sig_item = [i for i in significant(items[first : last + 1])]
                    named = len(sig_item) == 3 and is_word(items[first + sig_item[1]], "AS")  # ? AS "_c1"
                    if (first == last or named) and isinstance(items[first], Tok) and items[first].kind == "pgparam":
                        casts[first] = next(iter(types))
        for index in sorted(casts, reverse=True):
            param = items[index]
            items[index] = Group(_nodes(f"CAST({param.text} AS {casts[index]})"))
        return items
