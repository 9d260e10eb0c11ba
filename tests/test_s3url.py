"""The ``--store-url`` of an S3 store: what it means, and what it refuses and why."""

import pytest

from jobsvc.storage.s3url import Credentials, S3Location, credentials_from_env, parse_store_url

EP = "http://127.0.0.1:8333"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", S3Location("bucket")),
        ("s3://bucket/", S3Location("bucket")),
        ("s3://my.bucket-1/ci", S3Location("my.bucket-1", "ci/")),
        ("s3://b0b/ci/jobs/", S3Location("b0b", "ci/jobs/")),
        ("s3://b0b/with%20space/%C3%A9", S3Location("b0b", "with space/é/")),
        (f"s3://bkt/p?endpoint_url={EP}", S3Location("bkt", "p/", EP, addressing_style="path")),
        (f"s3://bkt?endpoint_url={EP}/", S3Location("bkt", "", EP, addressing_style="path")),
        (
            "s3://bkt?endpoint_url=https://s3.example.test",
            S3Location("bkt", "", "https://s3.example.test", "us-east-1", "path"),
        ),
        (f"s3://bkt?endpoint_url={EP}&addressing_style=virtual", S3Location("bkt", "", EP, addressing_style="virtual")),
        ("s3://bkt?region=eu-west-3", S3Location("bkt", region="eu-west-3")),
        ("s3://bkt?presign=1", S3Location("bkt", presign=True)),
        ("s3://bkt?presign=true&presign_expiry=60", S3Location("bkt", presign=True, presign_expiry=60)),
        ("s3://bkt?presign=0&presign_expiry=604800", S3Location("bkt", presign_expiry=604800)),
        (
            "s3://bkt?endpoint_url=http%3A%2F%2Fh%3A9000",
            S3Location("bkt", "", "http://h:9000", addressing_style="path"),
        ),
    ],
)
def test_store_urls(url, expected):
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/var/jobsvc", "must start with s3://"),
        ("http://bucket/x", "must start with s3://"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://key:secret@bucket/p", "credentials do not go in the store URL"),
        ("s3://bucket:9000/p", "may not have a port"),
        ("s3://Bucket", "not a valid bucket name"),
        ("s3://ab", "not a valid bucket name"),
        ("s3://bucket_name", "not a valid bucket name"),
        ("s3://-bucket", "not a valid bucket name"),
        ("s3://a..b", "not a valid bucket name"),
        ("s3://192.168.0.1", "not a valid bucket name"),
        ("s3://" + "b" * 64, "not a valid bucket name"),
        ("s3://bucket/a//b", "empty, '.' or '..' segment"),
        ("s3://bucket/a/../b", "empty, '.' or '..' segment"),
        ("s3://bucket/./b", "empty, '.' or '..' segment"),
        ("s3://bucket/%ff", "not UTF-8"),
        ("s3://bucket/a%0Ab", "control character"),
        ("s3://bucket/a\nb", "control character"),
        ("s3://bucket/" + "p" * 600, "longer than 512 bytes"),
        ("s3://bucket/p#frag", "#fragment"),
        ("s3://bucket/p#", "#fragment"),
        ("s3://bucket?endpoint=http://h", "unknown store URL option 'endpoint' (known: endpoint_url, region"),
        ("s3://bucket?region=a&region=b", "'region' is given twice"),
        ("s3://bucket?region", "not name=value pairs"),
        ("s3://bucket?endpoint_url=ftp://h", "http:// or https:// URL with a host"),
        ("s3://bucket?endpoint_url=h:9000", "http:// or https:// URL with a host"),
        ("s3://bucket?endpoint_url=http://", "http:// or https:// URL with a host"),
        ("s3://bucket?endpoint_url=http://k:s@h", "credentials do not go in endpoint_url"),
        ("s3://bucket?endpoint_url=http://h/s3", "scheme://host[:port] with nothing after it"),
        ("s3://bucket?endpoint_url=http://h:99999", "invalid port"),
        ("s3://bucket?endpoint_url=http://h:x", "invalid port"),
        ("s3://bucket?region=EU_WEST", "region must be a region name"),
        ("s3://bucket?addressing_style=host", "addressing_style must be one of path, virtual, auto"),
        ("s3://bucket?presign=yes", "presign must be 1 or 0"),
        ("s3://bucket?presign_expiry=0", "presign_expiry must be a whole number of seconds from 1 to 604800"),
        ("s3://bucket?presign_expiry=604801", "from 1 to 604800"),
        ("s3://bucket?presign_expiry=1.5", "from 1 to 604800"),
        ("s3://bucket?presign_expiry=-1", "from 1 to 604800"),
    ],
)
def test_bad_store_urls_say_what_is_wrong(url, message):
    with pytest.raises(ValueError) as refused:
        parse_store_url(url)
    assert message in str(refused.value)


def test_a_location_prints_as_its_url():
    assert str(parse_store_url(f"s3://bkt/ci?endpoint_url={EP}")) == "s3://bkt/ci/"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, Credentials("k", "s")),
        (
            {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"},
            Credentials("k", "s", "t"),
        ),
        ({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": ""}, Credentials("k", "s")),
        ({"AWS_ACCESS_KEY_ID": "k"}, "set AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": ""}, "set AWS_ACCESS_KEY_ID"),
        ({}, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_credentials_come_from_the_standard_variables_only(environ, expected):
    if isinstance(expected, Credentials):
        assert credentials_from_env(environ) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            credentials_from_env(environ)


def test_the_secret_stays_out_of_reprs():
    assert "hunter2" not in repr(Credentials("key", "hunter2"))
