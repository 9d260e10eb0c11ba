"""Fixture files: validation with located errors, and loading all or nothing."""

import zipfile
from pathlib import Path

import pytest
import yaml

from jobsvc.storage import fixture_format, fixtures
from jobsvc.storage.repo import Repository

MINIMAL = {
    "users": [{"username": "root", "tokens": [{"token": "glpat-abcdefgh"}]}],
    "projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "build"}]}]}],
}


def problems_of(data, folder=Path(".")):
    with pytest.raises(fixture_format.FixtureError) as info:
        fixture_format.parse_fixture(yaml.safe_dump(data), folder)
    return info.value.problems


def test_error_names_the_place():
    data = {
        "projects": [
            {
                "path": "g/p",
                "pipelines": [{}, {"jobs": [{"name": "a"}, {"name": "b"}, {"name": "c", "status": "bogus"}]}],
            }
        ]
    }
    (problem,) = problems_of(data)
    assert problem.startswith("projects[0].pipelines[1].jobs[2].status: Must be one of: created, ")


def test_unknown_keys_are_errors_but_x_keys_are_ignored():
    assert problems_of({"users": [{"username": "a", "tokne": []}]}) == ["users[0].tokne: Unknown field."]
    fixture = fixture_format.parse_fixture(
        yaml.safe_dump({"x-anchor": {"any": 1}, "users": [{"username": "a", "x-comment": "fine"}]}), Path(".")
    )
    assert fixture.data["users"][0]["username"] == "a"


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"users": [{"username": "a"}, {"username": "A"}]}, "users[1].username: 'A' is given twice (also users[0])"),
        (
            {"users": [{"username": "a", "tokens": [{"token": "short"}]}]},
            "users[0].tokens[0].token: Must be 8 or more printable characters without spaces.",
        ),
        ({"projects": [{"path": "nogroup"}]}, "projects[0].path: Must be a full path such as group/project."),
        (
            {"projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "a", "artifacts": {}}]}]}]},
            "projects[0].pipelines[0].jobs[0].artifacts: Give exactly one of files, archive or dir.",
        ),
        (
            {"projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "a", "created_at": "yesterday"}]}]}]},
            "projects[0].pipelines[0].jobs[0].created_at: Not a valid ISO-8601 timestamp with a time zone.",
        ),
        (
            {"projects": [{"path": "g/p", "pipelines": [{"id": 3}, {"id": 3}]}]},
            "projects[0].pipelines[1].id: 3 is given twice (also projects[0].pipelines[0])",
        ),
        (
            {"projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "a", "trace_file": "../../etc/passwd"}]}]}]},
            "projects[0].pipelines[0].jobs[0].trace_file: '../../etc/passwd' is outside the fixture's folder",
        ),
    ],
)
def test_validation_problems(data, expected, tmp_path):
    assert expected in problems_of(data, tmp_path)


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(fixture_format.FixtureError) as info:
        fixture_format.parse_fixture("users: [", tmp_path)
    assert info.value.problems[0].startswith("line ")
    with pytest.raises(fixture_format.FixtureError):
        fixture_format.parse_fixture("- a\n- b\n", tmp_path)


def test_json_is_accepted(tmp_path):
    import json

    fixture = fixture_format.parse_fixture(json.dumps(MINIMAL), tmp_path)
    assert fixture.data["projects"][0]["pipelines"][0]["jobs"][0]["status"] == "success"


def test_derived_times_follow_the_status():
    from datetime import UTC, datetime

    anchor = datetime(2020, 1, 1, tzinfo=UTC)
    base = {"created_at": None, "queued_at": None, "started_at": None, "finished_at": None}
    times = fixtures.job_times({**base, "status": "success"}, anchor)
    assert times["created_at"] <= times["queued_at"] <= times["started_at"] <= times["finished_at"]
    times = fixtures.job_times({**base, "status": "pending"}, anchor)
    assert times["queued_at"] and times["started_at"] is None and times["finished_at"] is None
    times = fixtures.job_times({**base, "status": "manual"}, anchor)
    assert times["queued_at"] is None and times["finished_at"] is None
    times = fixtures.job_times({**base, "status": "running"}, anchor)
    assert times["started_at"] and times["finished_at"] is None


async def test_load_and_skip_the_same_file(storage, tmp_path):
    db, store = storage
    fixture = fixture_format.parse_fixture(yaml.safe_dump(MINIMAL), tmp_path, "min.yaml")
    summary = await fixtures.load_fixture(Repository(db), store, fixture)
    assert (summary.users, summary.projects, summary.pipelines, summary.jobs) == (1, 1, 1, 1)
    assert (await fixtures.load_fixture(Repository(db), store, fixture)).skipped
    row = await db.fetchone("SELECT status, queued_at, started_at, finished_at FROM jobs")
    assert row["status"] == "success" and row["queued_at"] < row["started_at"] < row["finished_at"]
    token = await db.fetchone("SELECT digest FROM personal_access_tokens")
    assert token["digest"] != "glpat-abcdefgh" and len(token["digest"]) == 64


async def test_clash_with_database_changes_nothing(storage, tmp_path):
    db, store = storage
    await fixtures.load_fixture(
        Repository(db),
        store,
        fixture_format.parse_fixture(yaml.safe_dump({"users": [{"username": "root", "id": 1}]}), tmp_path),
    )
    second = {
        "users": [{"username": "other", "id": 2}, {"username": "third", "id": 1}],
        "projects": [
            {
                "path": "g/p",
                "pipelines": [
                    {"id": 5, "jobs": [{"id": 9, "name": "a", "artifacts": {"files": {"a": "b"}}, "trace": "log"}]}
                ],
            }
        ],
    }
    with pytest.raises(fixture_format.FixtureError) as info:
        await fixtures.load_fixture(
            Repository(db), store, fixture_format.parse_fixture(yaml.safe_dump(second), tmp_path)
        )
    assert info.value.problems == ["users[1].id: 1 already exists in the database"]
    assert (await db.fetchone("SELECT count(*) AS n FROM users"))["n"] == 1
    assert (await db.fetchone("SELECT count(*) AS n FROM projects"))["n"] == 0
    assert list((store.root / "artifacts").rglob("*.*")) == [] and list((store.root / "traces").iterdir()) == []


async def test_bad_reference_rolls_back_and_removes_files(storage, tmp_path):
    db, store = storage
    data = {
        "projects": [
            {
                "path": "g/p",
                "pipelines": [
                    {
                        "jobs": [
                            {"name": "a", "trace": "log", "artifacts": {"files": {"a": "b"}}},
                            {"name": "b", "user": "nobody"},
                        ]
                    }
                ],
            }
        ]
    }
    with pytest.raises(fixture_format.FixtureError) as info:
        await fixtures.load_fixture(Repository(db), store, fixture_format.parse_fixture(yaml.safe_dump(data), tmp_path))
    assert info.value.problems == ["projects[0].pipelines[0].jobs[1].user: no user 'nobody'"]
    assert (await db.fetchone("SELECT count(*) AS n FROM jobs"))["n"] == 0
    assert [p for p in store.root.rglob("*") if p.is_file()] == [db.path] + [
        p for p in store.root.rglob("*") if p.is_file() and p.name.startswith("jobsvc.sqlite3-")
    ]


async def test_archive_dir_and_files_go_through_the_store(storage, tmp_path):
    db, store = storage
    (tmp_path / "site" / "sub").mkdir(parents=True)
    (tmp_path / "site" / "sub" / "index.html").write_text("<html/>")
    with zipfile.ZipFile(tmp_path / "given.zip", "w") as archive:
        archive.writestr("given.txt", "given")
    (tmp_path / "7.log").write_bytes(b"from a file\n")
    data = {
        "projects": [
            {
                "path": "g/p",
                "pipelines": [
                    {
                        "jobs": [
                            {"id": 7, "name": "a", "trace_file": "7.log", "artifacts": {"dir": "site"}},
                            {"id": 8, "name": "b", "artifacts": {"archive": "given.zip", "filename": "custom.zip"}},
                            {
                                "id": 9,
                                "name": "c",
                                "artifacts": {"files": {"z.txt": "1", "a.txt": "2"}, "locked": True},
                            },
                        ]
                    }
                ],
            }
        ]
    }
    await fixtures.load_fixture(
        Repository(db), store, fixture_format.parse_fixture(yaml.safe_dump(data, sort_keys=False), tmp_path)
    )
    rows = {r["job_id"]: r for r in await db.fetchall("SELECT * FROM job_artifacts WHERE file_type = 'archive'")}
    names = {job_id: zipfile.ZipFile(store.path(row["store_key"])).namelist() for job_id, row in rows.items()}
    assert names == {7: ["sub/", "sub/index.html"], 8: ["given.txt"], 9: ["z.txt", "a.txt"]}
    assert rows[8]["filename"] == "custom.zip" and rows[9]["locked"] == 1
    assert store.path("traces/7.log").read_bytes() == b"from a file\n"
    for row in rows.values():
        assert row["store_key"].startswith(f"artifacts/{row['job_id']}/{row['sha256']}")


async def test_child_pipeline_parent_must_be_in_project(storage, tmp_path):
    db, store = storage
    data = {
        "projects": [{"path": "g/p", "pipelines": [{"id": 1}]}, {"path": "g/q", "pipelines": [{"id": 2, "parent": 1}]}]
    }
    with pytest.raises(fixture_format.FixtureError) as info:
        await fixtures.load_fixture(Repository(db), store, fixture_format.parse_fixture(yaml.safe_dump(data), tmp_path))
    assert info.value.problems == ["projects[1].pipelines[0].parent: no pipeline 1 in this project"]


def test_demo_fixture_is_valid():
    from jobsvc.http.app import DEMO_FIXTURE

    fixture = fixture_format.read_fixture(DEMO_FIXTURE)
    assert any(p["id"] == 1 for p in fixture.data["projects"])
