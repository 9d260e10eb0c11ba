#!/usr/bin/env python3
"""Generate the artifact and log files for bench/run, and a fixture that points jobs at them.

    .venv/bin/python bench/gen_artifacts.py [--out DIR] [--force]   (bench/run calls generate() itself)

Writes into --out (about 1.6 GB; stdlib only, reproducible from --seed):

* ``big.zip``: about 1 GiB, exactly 10,000 entries. In the middle of the archive:
  ``logs/big.log``, 100 MiB of CI-log-like text, DEFLATED (level 6, about 4:1: 25 MB), and
  ``logs/stored.log``, 100 MiB of other log text, STORED. Around them, 9,998 members of 94,000
  random bytes each (STORED, as a zip tool leaves incompressible files).
* ``small.zip``: about 10 MB, 100 entries (a 2 MiB deflated log and 99 random members).
* ``big.log``: 500 MiB of CI-log-like text; ``small.log``: 1 MiB.
* ``fixture.yaml``: an admin user with a token, project 1, pipeline 1, job 1 (``big.zip``,
  ``big.log``) and job 2 (``small.zip``, ``small.log``). Paths are relative to the fixture.
* ``manifest.json``: sizes and SHA-256 of every file and of the two big members, for checking
  the bytes the server sends.

Existing files are kept unless --force is given (which also removes the loaded ``store/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20
TOKEN = "glpat-bench-artifacts-000000"
BIG_ENTRIES = 10_000
RANDOM_MEMBER = 94_000
DATE = (2024, 1, 10, 10, 0, 0)
WORDS = (
    "compile",
    "rspec",
    "spec/models/user_spec.rb",
    "bundle",
    "install",
    "docker",
    "pull",
    "registry.example.com/ci/ruby:3.2",
    "Fetching",
    "Installing",
    "gem",
    "passed",
    "pending",
    "warning:",
    "deprecated",
    "node_modules/.bin/jest",
    "PASS",
    "src/components/Pipeline.test.js",
    "Downloading",
    "artifacts",
    "Uploading",
    "cache",
    "GET",
    "/api/v4/jobs/request",
    "200",
    "OK",
)
FIXTURE = """\
# Written by bench/gen_artifacts.py. Load with: python -m jobsvc load fixture.yaml --data-dir store
users:
  - username: bench
    id: 1
    admin: true
    tokens:
      - token: {token}
projects:
  - path: bench/artifacts
    id: 1
    members:
      - {{user: bench, role: maintainer}}
    pipelines:
      - id: 1
        ref: main
        sha: {sha}
        user: bench
        jobs:
          - id: 1
            name: big
            status: success
            trace_file: big.log
            artifacts: {{archive: big.zip, locked: true}}
          - id: 2
            name: small
            status: success
            trace_file: small.log
            artifacts: {{archive: small.zip, locked: true}}
"""


def log_text(rng: random.Random, size: int, piece: int = 4 * MIB) -> Iterator[bytes]:
    """``size`` bytes of log-like text in pieces: timestamps, ANSI colours, sections, varying hex and numbers.

    Deflate (level 6) gets about 4:1 out of it: repetitive, like a real CI log, but not trivially so.
    """
    left, line_no, carry = size, 0, b""
    choice, bits = rng.choice, rng.getrandbits
    while left > 0:
        want = min(piece, left)
        lines, length = [], len(carry)
        while length < want:
            line_no += 1
            seconds = line_no // 40
            if line_no % 200 == 0:
                line = (
                    f"\x1b[0Ksection_start:{1704880800 + seconds}:step_{line_no}\r\x1b[0K"
                    f"\x1b[32;1m$ {choice(WORDS)} {choice(WORDS)}\x1b[0;m\n"
                )
            else:
                status = "ok" if bits(5) else "\x1b[31;1mFAILED\x1b[0;m"
                line = (
                    f"2024-01-10T{10 + seconds // 3600 % 14:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}."
                    f"{bits(20) % 1000000:06d}Z 00O {choice(WORDS)} {choice(WORDS)} {choice(WORDS)} "
                    f"#{line_no} {bits(10)} ms {status} {bits(32):08x}\n"
                )
            lines.append(line)
            length += len(line)
        data = carry + "".join(lines).encode()
        carry = data[want:]
        left -= want
        yield data[:want]


def write_log(path: Path, rng: random.Random, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for piece in log_text(rng, size):
            digest.update(piece)
            handle.write(piece)
    return digest.hexdigest()


def add_member(archive: zipfile.ZipFile, name: str, pieces: Iterator[bytes], method: int) -> dict:
    info = zipfile.ZipInfo(name, DATE)
    info.compress_type = method
    digest, size = hashlib.sha256(), 0
    with archive.open(info, "w", force_zip64=True) as member:
        for piece in pieces:
            digest.update(piece)
            size += len(piece)
            member.write(piece)
    return {"size": size, "sha256": digest.hexdigest(), "method": "deflated" if method else "stored"}


def write_zip(path: Path, rng: random.Random, entries: int, big: list[tuple[str, int, int]]) -> dict:
    """``entries`` entries: the ``big`` (name, size, method) members in the middle, random members around them."""
    members, fillers = {}, entries - len(big)
    with zipfile.ZipFile(path, "w", compresslevel=6, allowZip64=True) as archive:
        for index in range(fillers):
            if index == fillers // 2:
                for name, size, method in big:
                    members[name] = add_member(archive, name, log_text(rng, size), method)
            info = zipfile.ZipInfo(f"build/out/part-{index:05d}.bin", DATE)
            archive.writestr(info, rng.randbytes(RANDOM_MEMBER), compress_type=zipfile.ZIP_STORED)
    return members


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(4 * MIB):
            digest.update(piece)
    return digest.hexdigest()


def generate(out: Path, seed: int = 1, force: bool = False) -> dict:
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not force:
        return json.loads(manifest_path.read_text())
    if force:
        shutil.rmtree(out / "store", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    rng = random.Random(seed)
    manifest: dict = {"seed": seed, "token": TOKEN, "files": {}, "members": {}}
    deflated, stored = zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED
    plans = {
        "big.zip": (BIG_ENTRIES, [("logs/big.log", 100 * MIB, deflated), ("logs/stored.log", 100 * MIB, stored)]),
        "small.zip": (100, [("logs/big.log", 2 * MIB, deflated)]),
    }
    for name, (entries, big) in plans.items():
        step = time.monotonic()
        members = write_zip(out / name, rng, entries, big)
        manifest["members"][name] = members
        manifest["files"][name] = {"size": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
        print(
            f"{name:10} {manifest['files'][name]['size'] / 1e6:8.1f} MB  {time.monotonic() - step:5.1f} s", flush=True
        )
    for name, size in (("big.log", 500 * MIB), ("small.log", MIB)):
        step = time.monotonic()
        manifest["files"][name] = {"size": size, "sha256": write_log(out / name, rng, size)}
        print(f"{name:10} {size / 1e6:8.1f} MB  {time.monotonic() - step:5.1f} s", flush=True)
    (out / "fixture.yaml").write_text(FIXTURE.format(token=TOKEN, sha=hashlib.sha1(b"bench").hexdigest()))
    manifest["generate_seconds"] = round(time.monotonic() - began, 1)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")  # last: its presence means "complete"
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/jobsvc-bench/artifacts"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="regenerate, and drop the loaded store/")
    args = parser.parse_args()
    manifest = generate(args.out, args.seed, args.force)
    big = manifest["members"]["big.zip"]["logs/big.log"]
    print(f"done in {manifest['generate_seconds']} s; logs/big.log {big['size'] / MIB:.0f} MiB deflated", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
