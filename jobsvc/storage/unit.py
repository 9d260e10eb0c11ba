"""A unit of work: one write transaction, with every statement group bound to it.

Callers hand ``Repository.write`` a function of a ``Unit``; the backend runs it in one
transaction with its own locking (SQLite: BEGIN IMMEDIATE behind one lock; PostgreSQL:
its own isolation) and commits unless it raises. The function may run again after a
rollback, so it must not do anything outside the database that it cannot repeat.
"""

from __future__ import annotations

from typing import Any

from jobsvc.storage.queries.artifacts import Artifacts
from jobsvc.storage.queries.instance import Instance
from jobsvc.storage.queries.jobs import Jobs
from jobsvc.storage.queries.pipelines import Pipelines
from jobsvc.storage.queries.runners import Runners
from jobsvc.storage.queries.traces import TraceChunks


class Statements:
    """The statement groups over one connection: a transaction (Unit) or the reader (Repository)."""

    def __init__(self, conn: Any):
        self.jobs = Jobs(conn)
        self.pipelines = Pipelines(conn)
        self.artifacts = Artifacts(conn)
        self.runners = Runners(conn)
        self.instance = Instance(conn)
        self.traces = TraceChunks(conn)


class Unit(Statements):
    def __init__(self, tx: Any):
        super().__init__(tx)
        self.tx = tx  # for the fixture loader, which lives in storage too
