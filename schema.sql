-- jobsvc database schema: the one source of DDL.
--
-- The file is a sequence of migrations. Each starts with a line
--   -- migration: N
-- and runs once, in one transaction, on a database whose PRAGMA user_version
-- is below N; user_version is then set to N. Never edit a migration that has
-- shipped: append a new one.
--
-- Conventions: timestamps are TEXT in GitLab's API format, UTC with
-- milliseconds ("2015-12-24T15:51:21.802Z"); commit dates keep their own
-- offset ("2015-12-24T16:51:14.000+01:00"). Booleans are 0/1. Lists and maps
-- (tags, scripts, variables) are JSON text. Secrets are stored as SHA-256 hex
-- digests only.

-- migration: 1

CREATE TABLE instance_settings (
    key   TEXT PRIMARY KEY,
    value TEXT
) WITHOUT ROWID;

-- fixture files already loaded, so a restart does not load them twice
CREATE TABLE fixture_loads (
    sha256    TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    loaded_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    username     TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name         TEXT NOT NULL,
    email        TEXT,
    state        TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'blocked', 'deactivated')),
    admin        INTEGER NOT NULL DEFAULT 0,
    bot          INTEGER NOT NULL DEFAULT 0,
    avatar_url   TEXT,
    bio          TEXT NOT NULL DEFAULT '',
    location     TEXT NOT NULL DEFAULT '',
    public_email TEXT,
    linkedin     TEXT NOT NULL DEFAULT '',
    twitter      TEXT NOT NULL DEFAULT '',
    website_url  TEXT NOT NULL DEFAULT '',
    organization TEXT NOT NULL DEFAULT '',
    job_title    TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL
);

CREATE TABLE personal_access_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    digest       TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,              -- JSON array: ["api"] or ["read_api"]
    expires_at   TEXT,                       -- a date, YYYY-MM-DD; expired from that day on
    revoked      INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX personal_access_tokens_user ON personal_access_tokens (user_id);

CREATE TABLE projects (
    id                         INTEGER PRIMARY KEY,
    path_with_namespace        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name                       TEXT NOT NULL,
    description                TEXT,
    visibility                 TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'internal', 'public')),
    public_builds              INTEGER NOT NULL DEFAULT 1,
    ci_job_token_scope_enabled INTEGER NOT NULL DEFAULT 0,
    default_branch             TEXT NOT NULL DEFAULT 'main',
    ci_config                  TEXT,
    created_at                 TEXT NOT NULL,
    last_activity_at           TEXT NOT NULL
);
-- GET /projects: what a user may see, in the orders GitLab offers
CREATE INDEX projects_visibility ON projects (visibility, id);
CREATE INDEX projects_name ON projects (name, id);
CREATE INDEX projects_last_activity ON projects (last_activity_at, id);

CREATE TABLE protected_branches (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
) WITHOUT ROWID;

-- access_level: 10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner
CREATE TABLE members (
    project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level INTEGER NOT NULL CHECK (access_level IN (10, 20, 30, 40, 50)),
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_user ON members (user_id, project_id);

CREATE TABLE runners (
    id             INTEGER PRIMARY KEY,
    description    TEXT NOT NULL DEFAULT '',
    name           TEXT,
    token_digest   TEXT UNIQUE,
    tags           TEXT NOT NULL DEFAULT '[]',   -- JSON array, sorted
    run_untagged   INTEGER NOT NULL DEFAULT 1,
    paused         INTEGER NOT NULL DEFAULT 0,
    is_shared      INTEGER NOT NULL DEFAULT 0,
    locked         INTEGER NOT NULL DEFAULT 0,
    access_level   TEXT NOT NULL DEFAULT 'not_protected',
    maximum_timeout INTEGER,
    info           TEXT NOT NULL DEFAULT '{}',   -- JSON: name, version, revision, platform, architecture, features
    created_at     TEXT NOT NULL,
    contacted_at   TEXT
);

CREATE TABLE runner_projects (
    runner_id  INTEGER NOT NULL REFERENCES runners (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (runner_id, project_id)
) WITHOUT ROWID;
CREATE INDEX runner_projects_project ON runner_projects (project_id, runner_id);

CREATE TABLE commits (
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    sha             TEXT NOT NULL,
    title           TEXT NOT NULL,
    message         TEXT NOT NULL,
    author_name     TEXT NOT NULL,
    author_email    TEXT NOT NULL,
    authored_date   TEXT NOT NULL,
    committer_name  TEXT NOT NULL,
    committer_email TEXT NOT NULL,
    committed_date  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    parent_ids      TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (project_id, sha)
) WITHOUT ROWID;

CREATE TABLE pipelines (
    id               INTEGER PRIMARY KEY,
    iid              INTEGER NOT NULL,
    project_id       INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    ref              TEXT NOT NULL,
    sha              TEXT NOT NULL,
    before_sha       TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000',
    tag              INTEGER NOT NULL DEFAULT 0,
    source           TEXT NOT NULL DEFAULT 'push',
    status           TEXT NOT NULL,
    user_id          INTEGER REFERENCES users (id) ON DELETE SET NULL,
    parent_id        INTEGER REFERENCES pipelines (id) ON DELETE SET NULL,
    artifacts_locked INTEGER NOT NULL DEFAULT 0,
    coverage         REAL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    UNIQUE (project_id, iid)
);
CREATE INDEX pipelines_project ON pipelines (project_id, id);
-- GET /projects/:id/pipelines lists top-level pipelines, filtered or ordered by one column
CREATE INDEX pipelines_project_top ON pipelines (project_id, id) WHERE parent_id IS NULL;
CREATE INDEX pipelines_project_status ON pipelines (project_id, status, id);
CREATE INDEX pipelines_project_ref ON pipelines (project_id, ref, id);
CREATE INDEX pipelines_project_sha ON pipelines (project_id, sha, id);
CREATE INDEX pipelines_project_source ON pipelines (project_id, source, id);
CREATE INDEX pipelines_project_updated ON pipelines (project_id, updated_at, id);
CREATE INDEX pipelines_project_user ON pipelines (project_id, user_id, id);
-- the newest successful pipeline of a ref (artifacts by ref)
CREATE INDEX pipelines_project_ref_status ON pipelines (project_id, ref, status, id);
CREATE INDEX pipelines_parent ON pipelines (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY,
    project_id          INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    pipeline_id         INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    stage               TEXT NOT NULL DEFAULT 'test',
    stage_idx           INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL CHECK (status IN ('created', 'waiting_for_resource', 'preparing',
                            'waiting_for_callback', 'pending', 'running', 'success', 'failed', 'canceling',
                            'canceled', 'skipped', 'manual', 'scheduled')),
    "when"              TEXT NOT NULL DEFAULT 'on_success',
    allow_failure       INTEGER NOT NULL DEFAULT 0,
    failure_reason      TEXT,
    coverage            REAL,
    user_id             INTEGER REFERENCES users (id) ON DELETE SET NULL,
    runner_id           INTEGER REFERENCES runners (id) ON DELETE SET NULL,
    retried             INTEGER NOT NULL DEFAULT 0,
    token_digest        TEXT UNIQUE,
    before_script       TEXT NOT NULL DEFAULT '[]',   -- JSON array of lines
    script              TEXT NOT NULL DEFAULT '[]',   -- JSON array of lines
    after_script        TEXT NOT NULL DEFAULT '[]',   -- JSON array of lines
    variables           TEXT NOT NULL DEFAULT '{}',   -- JSON object: the job's own variables
    job_variables       TEXT NOT NULL DEFAULT '[]',   -- JSON [{key, value}]: given when the job was played
    tags                TEXT NOT NULL DEFAULT '[]',   -- JSON array, sorted
    needs               TEXT,                         -- JSON array of job names; NULL: scheduled by stage
    artifacts_spec      TEXT,                         -- JSON {paths, expire_in, when} for the runner
    timeout             INTEGER NOT NULL DEFAULT 3600,
    start_in            TEXT,                         -- when: delayed: how long after it is processed
    scheduled_at        TEXT,                         -- when a scheduled job is enqueued
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    queued_at           TEXT,
    started_at          TEXT,
    finished_at         TEXT,
    erased_at           TEXT,
    erased_by           INTEGER REFERENCES users (id) ON DELETE SET NULL,
    artifacts_expire_at TEXT
);
-- GET /projects/:id/jobs, newest first, optionally by status (keyset and offset)
CREATE INDEX jobs_project ON jobs (project_id, id);
CREATE INDEX jobs_project_status ON jobs (project_id, status, id);
-- GET /projects/:id/pipelines/:pipeline_id/jobs
CREATE INDEX jobs_pipeline ON jobs (pipeline_id, id);
-- the runner queue: oldest pending job first
CREATE INDEX jobs_pending ON jobs (id) WHERE status = 'pending';
-- delayed jobs waiting for their time
CREATE INDEX jobs_scheduled ON jobs (scheduled_at) WHERE status = 'scheduled';

CREATE TABLE job_artifacts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    file_type   TEXT NOT NULL,
    file_format TEXT,
    filename    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    store_key   TEXT NOT NULL,               -- relative path inside the store, made by jobsvc.store
    locked      INTEGER NOT NULL DEFAULT 0,
    expire_at   TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (job_id, file_type)
);
CREATE INDEX job_artifacts_project ON job_artifacts (project_id, id);
CREATE INDEX job_artifacts_expire ON job_artifacts (expire_at) WHERE expire_at IS NOT NULL;

-- migration: 2
-- a runner's running jobs, for its job_execution_status (active or idle) in the job entity
CREATE INDEX jobs_running_runner ON jobs (runner_id) WHERE status = 'running';

-- migration: 3
-- What several jobsvc processes on one database share instead of keeping it in memory.
-- A lease: the background task named holds it until expires_at (the sweeper runs in one process at a time).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;
-- Requests counted per key (endpoint and user) and minute, for GitLab's per-user rate limits.
CREATE TABLE rate_counts (
    key    TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (key, minute)
) WITHOUT ROWID;

-- migration: 4
-- The live logs of a deployment whose blobs are in S3 (jobsvc.services.tracechunks), as GitLab keeps live
-- traces (Ci::BuildTraceChunk): chunk N of a job's log holds its bytes from start = N * 128 KiB, at most
-- 128 KiB, the last one filled up by each append. When the job ends its chunks become one object in the
-- bucket (the job's trace artifact) and are deleted. Large rows: not WITHOUT ROWID.
CREATE TABLE trace_chunks (
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    start      INTEGER NOT NULL,
    data       BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, start)
);

-- migration: 5
-- The artifact rows by store key: the orphan sweep compares each batch of the store's listing (in key order)
-- with the rows of the same key range, and a failed upload asks whether a row points at its blob.
CREATE INDEX job_artifacts_store_key ON job_artifacts (store_key);
