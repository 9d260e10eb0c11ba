"""The SQLite-to-PostgreSQL translation, one construct a row (jobsvc.storage.pgsql; no server needed).

tests/test_postgres.py proves on a real server that every statement of jobsvc/ translates into one
PostgreSQL accepts; these rows pin down what each rule writes.
"""

from __future__ import annotations

import pytest

from jobsvc.storage.pgsql import Column, Schema, Translator, UnsupportedSql

B, BN = Column("bigint", True), Column("bigint", False)
T, TN = Column("text", True), Column("text", False)
SCHEMA = Schema(
    tables={
        "jobs": {"id": B, "status": T, "when": T, "retried": B, "runner_id": BN, "pipeline_id": B, "name": T,
                 "started_at": TN, "coverage": Column("double precision", False)},
        "pipelines": {"id": B, "parent_id": BN, "project_id": B, "user_id": BN, "ref": T},
        "runners": {"id": B, "paused": B, "locked": B, "name": TN},
        "settings": {"key": T, "value": TN},
        "members": {"project_id": B, "user_id": B, "access_level": B},
    },
    primary_keys={"settings": ("key",), "members": ("project_id", "user_id"), "jobs": ("id",)},
    sequences={"jobs": "public.jobs_id_seq"},
)  # fmt: skip


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(SCHEMA)


CASES = [
    # parameters
    ("positional", "SELECT id FROM jobs WHERE id = ? AND status = ?",
     "SELECT id FROM jobs WHERE id = $1 AND status = $2"),
    ("numbered", "SELECT id FROM jobs WHERE id = ?2 AND status = ?1",
     "SELECT id FROM jobs WHERE id = $2 AND status = $1"),
    ("named, one number per name", "SELECT id FROM jobs WHERE pipeline_id = :p OR runner_id = :r OR id = :p",
     "SELECT id FROM jobs WHERE pipeline_id = $1 OR runner_id = $2 OR id = $1"),
    ("not inside strings or quoted names", """SELECT 'it''s ? :x' AS s, "wh?en" FROM jobs WHERE name = ?""",
     """SELECT 'it''s ? :x' AS s, "wh?en" FROM jobs WHERE name = $1"""),
    (":: is a cast, not :name; comments stay", "SELECT id::text AS x FROM jobs -- a ? comment",
     "SELECT id::text AS x FROM jobs -- a ? comment"),
    ("SQLite's other identifier quotes", "SELECT `when` AS a, [when] AS b FROM jobs",
     'SELECT "when" AS a, "when" AS b FROM jobs'),
    # INSERT
    ("OR IGNORE", "INSERT OR IGNORE INTO members (project_id, user_id, access_level) VALUES (?, ?, ?)",
     "INSERT INTO members (project_id, user_id, access_level) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
    ("OR REPLACE: an upsert on the primary key", "INSERT OR REPLACE INTO settings (key, value) VALUES ('a', ?)",
     """INSERT INTO settings (key, value) VALUES ('a', $1) ON CONFLICT ("key") DO UPDATE SET "value" = """
     """EXCLUDED."value\""""),
    ("REPLACE of key columns only", "REPLACE INTO members (project_id, user_id) VALUES (?, ?)",
     """INSERT INTO members (project_id, user_id) VALUES ($1, $2) ON CONFLICT ("project_id", "user_id") """
     "DO NOTHING"),
    ("OR IGNORE before RETURNING", "INSERT OR IGNORE INTO jobs (name) VALUES (?) RETURNING id",
     "INSERT INTO jobs (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id"),
    ("an upsert of its own stays",
     "INSERT INTO members (project_id, user_id, access_level) VALUES (1, 2, 30) "
     "ON CONFLICT (project_id, user_id) DO UPDATE SET access_level = excluded.access_level",
     "INSERT INTO members (project_id, user_id, access_level) VALUES (1, 2, 30) "
     "ON CONFLICT (project_id, user_id) DO UPDATE SET access_level = excluded.access_level"),
    # LIKE, GLOB, IS, ==
    ("LIKE: ASCII case-insensitive, no escape character", "SELECT id FROM runners WHERE name LIKE ?",
     "SELECT id FROM runners WHERE name ILIKE $1 ESCAPE ''"),
    ("LIKE ... ESCAPE kept", r"SELECT id FROM runners WHERE name NOT LIKE '%a\_b%' ESCAPE '\' AND id > 1",
     r"SELECT id FROM runners WHERE name NOT ILIKE '%a\_b%' ESCAPE '\' AND id > 1"),
    ("the pattern is the whole expression", "SELECT id FROM runners WHERE name LIKE '%' || ? || '%' AND paused = 0",
     "SELECT id FROM runners WHERE name ILIKE '%' || CAST($1 AS TEXT) || '%' ESCAPE '' AND paused = 0"),
    ("GLOB", "SELECT id FROM runners WHERE name GLOB 'gl*-[0-9]?.x%'",
     r"SELECT id FROM runners WHERE name SIMILAR TO 'gl%-[0-9]_.x\%'"),
    ("NOT GLOB with a negated class", "SELECT id FROM runners WHERE name NOT GLOB '*[^a-z]*'",
     "SELECT id FROM runners WHERE name NOT SIMILAR TO '%[^a-z]%'"),
    ("IS and IS NOT between values",
     "SELECT id FROM jobs WHERE runner_id IS ? AND started_at IS NOT ? AND name IS NOT NULL AND coverage IS NULL",
     "SELECT id FROM jobs WHERE runner_id IS NOT DISTINCT FROM $1 AND started_at IS DISTINCT FROM $2 "
     "AND name IS NOT NULL AND coverage IS NULL"),
    ("==", "SELECT id FROM jobs WHERE status == 'x'", "SELECT id FROM jobs WHERE status = 'x'"),
    # integers as booleans
    ("an integer column as the condition", "SELECT id FROM jobs WHERE retried",
     "SELECT id FROM jobs WHERE (retried <> 0)"),
    ("NOT, qualified", "SELECT id FROM jobs j WHERE NOT j.retried AND status = 'x'",
     "SELECT id FROM jobs j WHERE NOT (j.retried <> 0) AND status = 'x'"),
    ("in ON, in parentheses, from the right table",
     "SELECT id FROM jobs j JOIN runners r ON r.id = j.runner_id AND r.paused WHERE (r.locked OR j.retried)",
     "SELECT id FROM jobs j JOIN runners r ON r.id = j.runner_id AND (r.paused <> 0) "
     "WHERE ((r.locked <> 0) OR (j.retried <> 0))"),
    ("only integer columns", "SELECT id FROM jobs WHERE name AND id",
     "SELECT id FROM jobs WHERE name AND (id <> 0)"),
    ("CASE WHEN", "SELECT CASE WHEN retried THEN 'again' ELSE 'first' END AS attempt FROM jobs",
     "SELECT CASE WHEN (retried <> 0) THEN 'again' ELSE 'first' END AS attempt FROM jobs"),
    ("a condition summed; total and avg are real",
     "SELECT sum(status = 'failed') AS failed, total(coverage) AS t, avg(coverage) AS a FROM jobs",
     "SELECT (sum(CAST((status = 'failed') AS BIGINT))) AS failed, "
     "(CAST(COALESCE(sum(coverage), 0) AS DOUBLE PRECISION)) AS t, (CAST(avg(coverage) AS DOUBLE PRECISION)) AS a "
     "FROM jobs"),
    ("a condition stored into an integer column",
     "UPDATE jobs SET retried = (status = 'failed'), name = ? WHERE id = ?",
     "UPDATE jobs SET retried = CAST(((status = 'failed')) AS BIGINT), name = $1 WHERE id = $2"),
    ("... by INSERT", "INSERT INTO jobs (name, retried) VALUES (?, status IS NULL)",
     "INSERT INTO jobs (name, retried) VALUES ($1, CAST((status IS NULL) AS BIGINT))"),
    ("TRUE and FALSE are 1 and 0, but for conditions", "SELECT TRUE AS t, FALSE AS f FROM jobs WHERE TRUE",
     "SELECT 1 AS t, 0 AS f FROM jobs WHERE TRUE"),
    # functions
    ("COALESCE stays", "SELECT COALESCE(MAX(id), 0) + 1 AS n FROM jobs",
     "SELECT COALESCE(MAX(id), 0) + 1 AS n FROM jobs"),
    ("scalar max and min: NULL if any argument is", "SELECT max(id, ?) AS m, min(a.x, b.y, 3) AS n FROM jobs",
     "SELECT (CASE WHEN (id) IS NULL OR ($1) IS NULL THEN NULL ELSE GREATEST(id, $1) END) AS m, "
     "(CASE WHEN (a.x) IS NULL OR (b.y) IS NULL OR (3) IS NULL THEN NULL ELSE LEAST(a.x, b.y, 3) END) AS n FROM jobs"),
    ("aggregate max and min stay", "SELECT max(id) AS m, min(id) AS n FROM jobs",
     "SELECT max(id) AS m, min(id) AS n FROM jobs"),
    ("ifnull, iif, instr",
     "SELECT ifnull(name, '') AS n, iif(retried = 1, 'y', 'n') AS r, instr(name, 'x') AS i FROM jobs",
     "SELECT (COALESCE(name, '')) AS n, (CASE WHEN retried = 1 THEN 'y' ELSE 'n' END) AS r, (strpos(name, 'x')) AS i "
     "FROM jobs"),
    ("group_concat", "SELECT group_concat(name) AS a, group_concat(DISTINCT name, '; ') AS b FROM jobs",
     "SELECT (string_agg(CAST(name AS TEXT), ',')) AS a, (string_agg(DISTINCT CAST(name AS TEXT), '; ')) AS b "
     "FROM jobs"),
    ("round is real; CAST AS INTEGER is 64-bit",
     "SELECT round(coverage) AS a, round(coverage, 2) AS b, CAST(coverage AS INTEGER) AS c FROM jobs",
     "SELECT (CAST(round(CAST(coverage AS NUMERIC)) AS DOUBLE PRECISION)) AS a, "
     "(CAST(round(CAST(coverage AS NUMERIC), 2) AS DOUBLE PRECISION)) AS b, (CAST(coverage AS BIGINT)) AS c FROM jobs"),
    ("json_group_array of json_array, json_group_object: [] and {} when empty",
     "SELECT json_group_array(json_array(id, name)) AS a, json_group_object(name, id) AS o FROM jobs",
     "SELECT (COALESCE(json_agg((json_build_array(id, name))), '[]'::json)) AS a, "
     "(COALESCE(json_object_agg(name, id), '{}'::json)) AS o FROM jobs"),
    ("json_object, json_array_length, json",
     "SELECT json_object('id', id) AS o, json_array_length(name) AS n, json(name) AS j FROM jobs",
     "SELECT (json_build_object('id', id)) AS o, (json_array_length(CAST(name AS json))) AS n, "
     "(CAST(name AS json)) AS j FROM jobs"),
    ("|| concatenates text, whatever its operands",
     "SELECT id || name AS a, 'x' || id AS b, j.name || (id + 1) || coalesce(name, '') AS c FROM jobs j",
     "SELECT CAST(id AS TEXT) || CAST(name AS TEXT) AS a, 'x' || CAST(id AS TEXT) AS b, "
     "CAST(j.name AS TEXT) || CAST((id + 1) AS TEXT) || CAST(coalesce(name, '') AS TEXT) AS c FROM jobs j"),
    # FROM, ORDER BY, LIMIT
    ("a subquery in FROM gets an alias", "SELECT count(*) AS n FROM (SELECT 1 FROM jobs LIMIT 5)",
     "SELECT count(*) AS n FROM (SELECT 1 FROM jobs LIMIT 5) AS _sq1"),
    ("... unless it has one; after a join's ON too",
     "SELECT 1 AS one FROM (SELECT 1 FROM jobs) AS s JOIN (SELECT 2) t ON 1 = 1, (VALUES (1))",
     "SELECT 1 AS one FROM (SELECT 1 FROM jobs) AS s JOIN (SELECT 2) t ON 1 = 1, (VALUES (1)) AS _sq1"),
    ("IN (subquery) needs none", "SELECT id FROM jobs WHERE id IN (SELECT id FROM jobs)",
     "SELECT id FROM jobs WHERE id IN (SELECT id FROM jobs)"),
    ("NULLs first ascending, last descending, unless NOT NULL",
     "SELECT id FROM jobs ORDER BY started_at, name DESC, id DESC, coverage ASC NULLS LAST, 1",
     "SELECT id FROM jobs ORDER BY started_at NULLS FIRST, name DESC, id DESC, coverage ASC NULLS LAST, 1 NULLS FIRST"),
    ("LIMIT -1", "SELECT id FROM jobs j ORDER BY j.runner_id DESC LIMIT -1",
     "SELECT id FROM jobs j ORDER BY j.runner_id DESC NULLS LAST LIMIT ALL"),
    ("LIMIT offset, count", "SELECT id FROM jobs LIMIT 10, 20", "SELECT id FROM jobs LIMIT 20 OFFSET 10"),
    ("LIMIT ? OFFSET ?", "SELECT id FROM jobs LIMIT ? OFFSET ?", "SELECT id FROM jobs LIMIT $1 OFFSET $2"),
    ("COLLATE BINARY", "SELECT name FROM jobs WHERE name = 'a' COLLATE BINARY",
     """SELECT name FROM jobs WHERE name = 'a' COLLATE "C\""""),
    # types of bare parameters
    ("the anchor of a recursive CTE",
     "WITH RECURSIVE f(id) AS (SELECT ? UNION ALL SELECT p.id FROM pipelines p JOIN f ON p.parent_id = f.id) "
     "SELECT id FROM f",
     "WITH RECURSIVE f(id) AS (SELECT (CAST($1 AS bigint)) UNION ALL SELECT p.id FROM pipelines p JOIN f "
     "ON p.parent_id = f.id) SELECT id FROM f"),
    ("INSERT ... SELECT: PostgreSQL types them by the column",
     "INSERT INTO jobs (name, status) SELECT name, ? FROM jobs WHERE id = ?",
     "INSERT INTO jobs (name, status) SELECT name, $1 FROM jobs WHERE id = $2"),
    # "when", which is a keyword in both
    ('"when"', 'UPDATE jobs SET "when" = ? WHERE id = ?', 'UPDATE jobs SET "when" = $1 WHERE id = $2'),
    ("a trailing semicolon", "SELECT id FROM jobs;", "SELECT id FROM jobs"),
]  # fmt: skip


@pytest.mark.parametrize(("sqlite", "postgres"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_translation(translator, sqlite, postgres):
    assert translator.translate(sqlite).sql == postgres


def test_named_parameters_bind_by_name(translator):
    translation = translator.translate("SELECT id FROM jobs WHERE pipeline_id = :p OR runner_id = :r OR id = :p")
    assert translation.names == ("p", "r")
    assert translation.bind({"r": 2, "p": 1, "unused": 3}) == [1, 2]
    with pytest.raises(TypeError, match=":r"):
        translation.bind({"p": 1})


def test_positional_parameters_are_counted(translator):
    translation = translator.translate("SELECT id FROM jobs WHERE id = ?2 AND status = ?1")
    assert (translation.names, translation.count) == (None, 2)
    assert translation.bind(("a", 1)) == ["a", 1]
    with pytest.raises(TypeError, match="2 parameters"):
        translation.bind((1,))


def test_unnamed_results_keep_sqlites_names(translator):
    """SQLite names ``count(*)`` "count(*)", PostgreSQL "count": the alias maps back."""
    sql = "SELECT count(*), max(id) ,  COALESCE(MAX(id), 0) + 1, id, j.name, j.*, ? FROM jobs j"
    translation = translator.translate(sql)
    assert translation.sql == (
        'SELECT count(*) AS "_c1", max(id) AS "_c2" ,  COALESCE(MAX(id), 0) + 1 AS "_c3", id, j.name, j.*, '
        '$1 AS "_c7" FROM jobs j'
    )
    assert translation.renames == {"_c1": "count(*)", "_c2": "max(id)", "_c3": "COALESCE(MAX(id), 0) + 1", "_c7": "?"}


def test_aliases_keep_their_case(translator):
    translation = translator.translate('SELECT id AS jobId, name AS "Name", count(*) n, j.status s FROM jobs j')
    assert translation.sql == 'SELECT id AS "jobId", name AS "Name", count(*) n, j.status s FROM jobs j'
    assert translation.renames == {}


def test_insert_returns_the_id_and_says_when_it_gives_one(translator):
    generated = translator.translate("INSERT INTO jobs (name, status) VALUES (?, ?)", True)
    assert generated.sql.endswith(" RETURNING id")
    assert (generated.table, generated.explicit_id, generated.returns_id) == ("jobs", False, True)
    explicit = translator.translate("INSERT INTO jobs (id, name) VALUES (?, ?)")
    assert (explicit.table, explicit.explicit_id, explicit.returns_id) == ("jobs", True, False)
    assert not explicit.sql.endswith("RETURNING id")
    without_id = translator.translate("INSERT INTO settings (key, value) VALUES (?, ?)", True)
    assert not without_id.returns_id and "RETURNING" not in without_id.sql


def test_translations_are_cached(translator):
    sql = "SELECT id FROM jobs WHERE name = ?"
    assert translator.translate(sql) is translator.translate(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT name FROM jobs ORDER BY name COLLATE NOCASE", "citext"),
        ("SELECT strftime('%s', 'now')", "strftime"),
        ("SELECT json_extract(name, '$.a') FROM jobs", "json_extract"),
        ("SELECT name FROM jobs WHERE name GLOB ?", "literal pattern"),
        ("PRAGMA user_version", "PRAGMA"),
        ("BEGIN IMMEDIATE", "BEGIN"),
        ("SELECT 1; SELECT 2", "one statement"),
        ("SELECT $1", r"\$1"),
        ("SELECT ?, :a", "positional and named"),
        ("INSERT OR ROLLBACK INTO jobs (name) VALUES (1)", "OR ROLLBACK"),
        ("INSERT OR REPLACE INTO jobs VALUES (1)", "column list"),
        ("SELECT 'unterminated", "cannot read"),
        ("SELECT (1", "unbalanced"),
    ],
)
def test_what_has_no_faithful_translation_is_refused(translator, sql, message):
    with pytest.raises(UnsupportedSql, match=message):
        translator.translate(sql)
