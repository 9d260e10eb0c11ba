"""Who may do what: GitLab's roles, visibility and ``public_builds``, as pure functions.

Abilities follow ``ProjectPolicy`` / ``Ci::BuildPolicy`` (reference §1.4):
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

    # read_pipeline follows read_build for the endpoints jobsvc serves (reference §2.2).
    read_pipeline = read_build

    def at_least(self, level: int) -> bool:
        return self.admin or self.level >= level
