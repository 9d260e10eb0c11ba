"""jobsvc: a GitLab-compatible CI Jobs API (v4) service on SQLite."""

__version__ = "0.1.0"

# The GitLab version jobsvc reports on GET /api/v4/version: the API level it follows.
GITLAB_VERSION = "18.6.0"
