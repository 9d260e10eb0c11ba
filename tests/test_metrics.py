"""/-/metrics: Prometheus's text, read with prometheus_client's own parser, and numbers that move with requests."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from jobsvc.http.app import create_app
from jobsvc.http.metrics import UNMATCHED
from tests.conftest import RUNNING_JOB_TOKEN, auth, world
from tests.test_runner_api import a_zip, form, patch

JOB_ROUTE = "/api/v4/projects/{id}/jobs/{job_id}"


async def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /-/metrics, by name and labels."""
    resp = await client.get("/-/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests(samples, method: str, route: str, status: int) -> float:
    return samples.get(("http_requests_total", (("method", method), ("route", route), ("status", str(status)))), 0)


def histogram_count(samples, method: str, route: str) -> float:
    return samples.get(("http_request_duration_seconds_count", (("method", method), ("route", route))), 0)


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_requests_are_counted_by_route_pattern_and_status(client):
    before = await scrape(client)
    for path in ("/api/v4/projects/1/jobs/8", "/api/v4/projects/2/jobs/31", "/api/v4/projects/1/jobs/99999"):
        await client.get(path, headers=auth("root"))
    after = await scrape(client)
    assert requests(after, "GET", JOB_ROUTE, 200) - requests(before, "GET", JOB_ROUTE, 200) == 2
    assert requests(after, "GET", JOB_ROUTE, 404) - requests(before, "GET", JOB_ROUTE, 404) == 1
    assert histogram_count(after, "GET", JOB_ROUTE) - histogram_count(before, "GET", JOB_ROUTE) == 3
    # the scrape itself is counted too, once it is answered
    assert requests(after, "GET", "/-/metrics", 200) == requests(before, "GET", "/-/metrics", 200) + 1


async def test_labels_stay_bounded_whatever_the_client_sends(client):
    await client.get("/-/no/such/path/12345")  # no route: not a project path either
    await client.request("PROPFIND", "/api/v4/projects/1/jobs/8")  # WebDAV's: aiohttp's parser knows it
    await client.get("/api/v4/projects/1/jobs/8", headers=auth("root"))
    resp = await client.get("/-/metrics")
    text = await resp.text()
    assert "/-/no/such/path" not in text and "/projects/1/jobs/8" not in text and "PROPFIND" not in text
    samples = await scrape(client)
    assert requests(samples, "GET", UNMATCHED, 404) == 1
    assert requests(samples, "other", UNMATCHED, 404) == 1  # the catch-all's 404 for a method no route has


async def test_latency_histogram_has_buckets_and_a_sum(client):
    await client.get("/api/v4/projects/1/jobs/8", headers=auth("root"))
    samples = await scrape(client)
    labels = (("le", "+Inf"), ("method", "GET"), ("route", JOB_ROUTE))
    assert samples[("http_request_duration_seconds_bucket", labels)] == 1
    assert 0 < samples[("http_request_duration_seconds_sum", (("method", "GET"), ("route", JOB_ROUTE)))] < 10


async def test_jobs_by_status_come_from_the_database(client):
    expected = Counter(job["status"] for p in world()["projects"] for pl in p["pipelines"] for job in pl["jobs"])
    before = await scrape(client)
    for status in ("success", "failed", "running", "pending", "manual"):
        assert value(before, "jobsvc_jobs", status=status) == expected[status]
    assert value(before, "jobsvc_jobs", status="scheduled") == 0  # every status has its series
    resp = await client.post("/api/v4/projects/1/jobs/11/cancel", headers=auth("maintainer"))
    assert resp.status == 201
    after = await scrape(client)
    assert value(after, "jobsvc_jobs", status="running") == expected["running"] - 1
    assert value(after, "jobsvc_jobs", status="canceled") == expected["canceled"] + 1


async def test_log_appends_uploads_and_bytes_stored(client):
    before = await scrape(client)
    resp = await patch(client, b"more output\n", "8-19")  # the running job's log holds "started\n"
    assert resp.status == 202
    refused = await patch(client, b"x", "0-0")  # not at the log's end: 416, not counted
    assert refused.status == 416
    archive = a_zip()
    resp = await client.post("/api/v4/jobs/11/artifacts", data=form(archive), headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
    assert resp.status == 201
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("jobsvc_trace_appends_total") == 1
    assert grew("jobsvc_trace_appended_bytes_total") == len(b"more output\n")
    assert grew("jobsvc_artifact_uploads_total") == 1
    assert grew("jobsvc_artifact_uploaded_bytes_total") == len(archive)
    assert grew("jobsvc_stored_blobs", kind="artifacts") == 1
    assert grew("jobsvc_stored_bytes", kind="artifacts") == len(archive)
    assert value(after, "jobsvc_stored_bytes", kind="logs") > 0


async def test_each_app_counts_in_a_registry_of_its_own(aiohttp_client, config):
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))
    for _ in range(3):
        await first.get("/api/v4/projects/1/jobs/8", headers=auth("root"))
    assert requests(await scrape(first), "GET", JOB_ROUTE, 200) == 3
    assert requests(await scrape(second), "GET", JOB_ROUTE, 200) == 0


async def test_the_process_reports_itself(client):
    samples = await scrape(client)
    assert value(samples, "process_resident_memory_bytes") > 0
