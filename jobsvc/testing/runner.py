"""Playing the runner in a test: GitLab's runner API (lib/api/ci/runner.rb) spoken over HTTP, as gitlab-runner does.

``Runner(url, token)`` (or ``Runner.register``) claims jobs with ``POST /api/v4/jobs/request``; a
``RunnerJob`` appends to its log (``PATCH /jobs/:id/trace`` with ``Content-Range``), uploads artifacts
(``POST /jobs/:id/artifacts``, a zip built from a dict of files) and finishes (``PUT /jobs/:id``).
Only the standard library is used, so it works wherever jobsvc is installed; any answer other than the
expected one raises ``RunnerError`` with the status and body.
"""

from __future__ import annotations

import io
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

# no proxy from the environment: the servers a test talks to are on this machine
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POLL_INTERVAL = 0.05


class RunnerError(Exception):
    """The server answered a runner call with something else than the protocol's success."""

    def __init__(self, what: str, status: int, body: bytes) -> None:
        super().__init__(f"{what}: {status} {body[:500].decode('utf-8', 'replace')}")
        self.status = status
        self.body = body


@dataclass
class Answer:
    status: int
    headers: Message  # case-insensitive, as http.client gives them
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Answer:
    """One HTTP request; every status is an answer (none raises)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with _OPENER.open(request, timeout=60) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def _json(value: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(value).encode(), {"Content-Type": "application/json"}


def zip_of(files: Mapping[str, str | bytes]) -> bytes:
    """A zip archive of ``{"path/in/zip": text or bytes}``; a name ending in "/" is a directory entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def multipart(name: str, filename: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file part, and its Content-Type."""
    boundary = "jobsvc-" + secrets.token_hex(16)
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode("utf-8") + content + f"\r\n--{boundary}--\r\n".encode("ascii")
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Runner:
    """A runner with its token, at a jobsvc (or GitLab) base URL."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def __repr__(self) -> str:
        return f"<Runner {self.token[:8]}... at {self.url}>"

    @classmethod
    def register(cls, url: str, registration_token: str, **params: Any) -> Runner:
        """``POST /api/v4/runners``: description, tag_list, run_untagged, paused, locked, access_level, ..."""
        body, headers = _json({"token": registration_token, **params})
        answer = call("POST", f"{url.rstrip('/')}/api/v4/runners", body=body, headers=headers)
        if answer.status != 201:
            raise RunnerError("POST /runners", answer.status, answer.body)
        return cls(url, answer.json()["token"])

    def claim(self, timeout: float = 0.0) -> RunnerJob | None:
        """The next job this runner may take, now running; with ``timeout``, polls that many seconds for one.

        None when there is none (the server's 204).
        """
        deadline = time.monotonic() + timeout
        body, headers = _json({"token": self.token, "info": {"name": "jobsvc-testing"}})
        while True:
            answer = call("POST", f"{self.url}/api/v4/jobs/request", body=body, headers=headers)
            if answer.status == 201:
                return RunnerJob(self.url, answer.json())
            if answer.status != 204:
                raise RunnerError("POST /jobs/request", answer.status, answer.body)
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_INTERVAL)

    def run(
        self,
        log: str | bytes = "",
        artifacts: Mapping[str, str | bytes] | None = None,
        state: str = "success",
        *,
        timeout: float = 0.0,
        **finish: Any,
    ) -> RunnerJob:
        """Claim the next job, write ``log``, upload ``artifacts`` (a zip of them) and finish it with ``state``.

        Raises LookupError when no job comes within ``timeout`` seconds.
        """
        job = self.claim(timeout)
        if job is None:
            raise LookupError(f"no job for this runner within {timeout:g}s")
        if log:
            job.append_log(log)
        if artifacts is not None:
            job.upload_artifacts(artifacts)
        job.finish(state, **finish)
        return job

    def verify(self) -> bool:
        """``POST /api/v4/runners/verify``: whether the server knows this runner's token."""
        body, headers = _json({"token": self.token})
        answer = call("POST", f"{self.url}/api/v4/runners/verify", body=body, headers=headers)
        if answer.status not in (200, 403):
            raise RunnerError("POST /runners/verify", answer.status, answer.body)
        return answer.status == 200

    def unregister(self) -> None:
        """``DELETE /api/v4/runners``."""
        body, headers = _json({"token": self.token})
        answer = call("DELETE", f"{self.url}/api/v4/runners", body=body, headers=headers)
        if answer.status != 204:
            raise RunnerError("DELETE /runners", answer.status, answer.body)


@dataclass
class RunnerJob:
    """A job a runner claimed: what the server sent (``payload``), and the calls the job's token allows."""

    url: str
    payload: dict[str, Any]
    log_size: int = 0  # bytes of log the server has, as its last Range header said
    status: str = "running"  # the server's Job-Status, as its last answer said
    _log: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    @property
    def name(self) -> str:
        return str(self.payload["job_info"]["name"])

    @property
    def stage(self) -> str:
        return str(self.payload["job_info"]["stage"])

    @property
    def variables(self) -> dict[str, str]:
        """The job's CI variables (CI_JOB_ID, CI_PROJECT_PATH, ...), by name."""
        return {item["key"]: item["value"] for item in self.payload.get("variables", [])}

    @property
    def script(self) -> list[str]:
        return [line for step in self.payload.get("steps", []) for line in step.get("script", [])]

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"JOB-TOKEN": self.token, **(extra or {})}

    def append_log(self, text: str | bytes) -> int:
        """Append to the job's log (one ``PATCH /jobs/:id/trace`` from the log's current end); the new size."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if not data:
            return self.log_size
        headers = self._headers({"Content-Range": f"{self.log_size}-{self.log_size + len(data) - 1}"})
        answer = call("PATCH", f"{self.url}/api/v4/jobs/{self.id}/trace", body=data, headers=headers)
        if answer.status != 202:
            raise RunnerError(f"PATCH /jobs/{self.id}/trace", answer.status, answer.body)
        self.log_size = int(answer.headers["Range"].rsplit("-", 1)[1])
        self.status = answer.headers.get("Job-Status", self.status)
        self._log += data
        return self.log_size

    @property
    def log(self) -> bytes:
        """What this helper appended so far."""
        return bytes(self._log)

    def upload_artifacts(
        self,
        files: Mapping[str, str | bytes] | None = None,
        *,
        archive: bytes | Path | None = None,
        filename: str = "artifacts.zip",
        artifact_type: str = "archive",
        artifact_format: str = "zip",
        expire_in: str | None = None,
    ) -> None:
        """``POST /jobs/:id/artifacts``: a zip of ``files`` (``{"path": content}``), or ``archive``'s bytes as they are.

        ``artifact_type``/``artifact_format`` as gitlab-runner sends them (``junit``/``gzip`` for a report).
        """
        if (files is None) == (archive is None):
            raise TypeError("give files (a dict, zipped for you) or archive (the bytes or a path), not both")
        content = zip_of(files) if files is not None else archive.read_bytes() if isinstance(archive, Path) else archive
        assert content is not None
        query = {"artifact_type": artifact_type, "artifact_format": artifact_format}
        if expire_in is not None:
            query["expire_in"] = expire_in
        body, headers = multipart("file", filename, content)
        url = f"{self.url}/api/v4/jobs/{self.id}/artifacts?{urllib.parse.urlencode(query)}"
        answer = call("POST", url, body=body, headers=self._headers(headers))
        if answer.status != 201:
            raise RunnerError(f"POST /jobs/{self.id}/artifacts", answer.status, answer.body)

    def finish(self, state: str = "success", failure_reason: str | None = None, exit_code: int | None = None) -> str:
        """``PUT /jobs/:id`` with ``state`` (success, failed, or running for a heartbeat); the job's status after."""
        params: dict[str, Any] = {"token": self.token, "state": state}
        if failure_reason is not None:
            params["failure_reason"] = failure_reason
        if exit_code is not None:
            params["exit_code"] = exit_code
        body, headers = _json(params)
        answer = call("PUT", f"{self.url}/api/v4/jobs/{self.id}", body=body, headers=headers)
        if answer.status != 200:
            raise RunnerError(f"PUT /jobs/{self.id}", answer.status, answer.body)
        self.status = answer.headers.get("Job-Status", state)
        return self.status

    def succeed(self) -> str:
        return self.finish("success")

    def fail(self, failure_reason: str = "script_failure") -> str:
        return self.finish("failed", failure_reason)
