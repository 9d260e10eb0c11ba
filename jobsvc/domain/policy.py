"""Who may do what: GitLab's roles, visibility and ``public_builds``, as pure functions.

Abilities follow ``ProjectPolicy`` / ``Ci::BuildPolicy`` (app/policies/project_policy.rb,
app/policies/ci/build_policy.rb):
``read_project`` for members, for anyone on a public project and for any
signed-in user on an internal one; ``read_build`` for reporters and up, or
for anyone who can read the project when it has public pipelines on.
Instance admins can do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50

ROLES = {"guest": GUEST, "reporter": REPORTER, "developer": DEVELOPER, "maintainer": MAINTAINER, "owner": OWNER}


@dataclass(frozen=True)
class Access:
    """What one caller is to one project."""

    signed_in: bool
    admin: bool
    level: int  # the member role, 0 for none
    visibility: str
    public_builds: bool

    def read_project(self) -> bool:
        if self.admin or self.level > 0 or self.visibility == "public":
            return True
        return self.signed_in and self.visibility == "internal"

    def read_build(self) -> bool:
        if self.admin or self.level >= REPORTER:
            return True
        return self.public_builds and self.read_project()

    # read_pipeline follows read_build for the endpoints jobsvc serves (lib/api/ci/jobs.rb checks read_pipeline,
    # then app/finders/ci/jobs_finder.rb keeps what the user may read_build).
    read_pipeline = read_build

    def at_least(self, level: int) -> bool:
        return self.admin or self.level >= level


def is_protected(ref: str, protected_refs: list[str]) -> bool:
    """A ref is protected when the project lists it (branches and tags alike; wildcards as GitLab: ``release/*``)."""
    from fnmatch import fnmatchcase

    return any(ref == pattern or ("*" in pattern and fnmatchcase(ref, pattern)) for pattern in protected_refs)


def can_update_job(access: Access, protected: bool) -> bool:
    """update_build, cancel, retry, play, keep: developers; on a protected ref only who may push there
    (maintainers, GitLab's default for protected branches)."""
    return access.at_least(MAINTAINER) or (access.at_least(DEVELOPER) and not protected)


def can_erase_job(access: Access, protected: bool, own_job: bool) -> bool:
    """erase_build: maintainers (admin_build), or the developer who triggered the job on an unprotected ref."""
    return access.at_least(MAINTAINER) or (access.at_least(DEVELOPER) and own_job and not protected)


def can_destroy_artifacts(access: Access) -> bool:
    return access.at_least(MAINTAINER)
