"""A project's ``.gitlab-ci.yml`` read into a pipeline definition, or refused whole.

jobsvc understands ``stages``, top-level ``variables`` and ``default``, hidden
``.name`` jobs (templates for YAML anchors), and jobs with ``stage``, ``script``,
``before_script``, ``after_script``, ``when`` (with ``start_in`` for delayed
jobs), ``allow_failure``, ``tags``, ``variables``, ``artifacts: {paths,
expire_in, when}`` and ``needs``. Any other key, even one GitLab knows
(``rules``, ``only``, ``extends``, ``include``, ``image``, ...), refuses the whole
definition: running part of a pipeline would be worse than running none.

Errors read like GitLab's lint errors so that a message users already know
points at the same place. Sources in gitlabhq/gitlabhq:
``lib/gitlab/ci/config/entry/{root,default,job,processable,artifacts,needs}.rb``,
``lib/gitlab/ci/config/entry/validator.rb`` (``"#{location} #{error}".downcase``),
``lib/gitlab/ci/config/entry/jobs.rb``, ``lib/gitlab/ci/config/stages.rb`` and
``lib/gitlab/ci/yaml_processor.rb`` (stage and needs checks, not downcased).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, NoReturn

import yaml

from jobsvc.domain.durations import DurationError, parse_duration

DEFAULT_STAGES = ("build", "test", "deploy")
EDGE_PRE, EDGE_POST = ".pre", ".post"
DEFAULT_STAGE = "test"
ALLOWED_WHEN = ("on_success", "on_failure", "always", "manual", "delayed")
ARTIFACTS_WHEN = ("on_success", "on_failure", "always")

ROOT_KEYS = ("stages", "variables", "default")
# Root::ALLOWED_KEYS (plus spec:): GitLab's top-level keywords, never job names.
GITLAB_ROOT_KEYWORDS = frozenset({
    "default", "include", "before_script", "image", "services", "after_script", "variables", "stages", "cache",
    "workflow", "spec",
})  # fmt: skip
DEFAULT_KEYS = ("before_script", "after_script", "tags", "artifacts")
JOB_KEYS = (
    "stage", "script", "before_script", "after_script", "when", "start_in", "allow_failure", "tags", "variables",
    "artifacts", "needs",
)  # fmt: skip
ARTIFACTS_KEYS = ("paths", "expire_in", "when")
NEED_KEYS = ("job",)

MAX_JOB_NAME = 255
MAX_COMMAND_NESTING = 10
MAX_START_IN = 7 * 24 * 3600  # Job: ``start_in, duration: { limit: '1 week' }``
# A bound on the parsed document, counted through aliases so that anchors cannot multiply it
# without limit (GitLab: Gitlab::Config::Loader::Yaml#too_big?).
MAX_NODES = 100_000
MAX_DEPTH = 100


class CiConfigError(ValueError):
    """A definition jobsvc refuses; ``message`` is the lint-style text for the 400 answer."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Artifacts:
    paths: tuple[str, ...] = ()
    expire_in: str | None = None
    when: str = "on_success"


@dataclass(frozen=True)
class JobDefinition:
    """One job as the pipeline creates it.

    ``before_script`` and ``script`` stay apart because the runner payload makes
    them one ``script`` step while ``after_script`` is a step of its own.
    ``variables`` are the YAML variables: the top-level ones overridden by the
    job's. ``needs`` is None for a job scheduled by stages, a tuple (maybe empty)
    for one with ``needs:``.
    """

    name: str
    stage: str
    stage_idx: int
    script: tuple[str, ...]
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    when: str = "on_success"
    allow_failure: bool = False
    tags: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    artifacts: Artifacts | None = None
    needs: tuple[str, ...] | None = None
    start_in: str | None = None


@dataclass(frozen=True)
class PipelineDefinition:
    """The stages (with ``.pre`` and ``.post``), the jobs in stage order, and the
    variables given when the pipeline was created, which outrank the YAML ones."""

    ref: str
    stages: tuple[str, ...]
    jobs: tuple[JobDefinition, ...]
    variables: Mapping[str, str]


def parse_ci_config(text: str, *, ref: str, variables: Mapping[str, str]) -> PipelineDefinition:
    """Read ``text`` into a definition; raises CiConfigError naming the first problem found."""
    if not text.strip():
        raise CiConfigError("Please provide content of .gitlab-ci.yml")
    config = _load(text)
    if not isinstance(config, dict):
        raise CiConfigError("Invalid configuration format")
    _check_size(config)
    _check_keys("root", [key for key in config if key in GITLAB_ROOT_KEYWORDS], ROOT_KEYS)
    stages = _stages(config.get("stages"))
    root_variables = _variables(config.get("variables"), "variables", ("value", "description"))
    defaults = _defaults(config.get("default"))
    jobs = [
        _job(name, value, root_variables, defaults)
        for name, value in config.items()
        if name not in GITLAB_ROOT_KEYWORDS and not _hidden(name)
    ]
    if not jobs:
        _fail("jobs", "config should contain at least one visible job")
    _check_logic(jobs, stages)
    placed = sorted(
        (JobDefinition(stage_idx=stages.index(job["stage"]), **job) for job in jobs), key=lambda job: job.stage_idx
    )
    return PipelineDefinition(ref=ref, stages=stages, jobs=tuple(placed), variables=dict(variables))


def _fail(location: str, message: str) -> NoReturn:
    """An entry error as GitLab words it: location, then message, all lower case."""
    raise CiConfigError(f"{location} {message}".lower())


def _load(text: str) -> object:
    """Safe YAML (anchors, aliases and merge keys work; tags such as ``!reference`` do not),
    refusing a job name defined twice, which YAML would otherwise settle silently."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if isinstance(node, yaml.MappingNode):
            _reject_duplicate_names(node)
        return None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise CiConfigError(f"(<unknown>): {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise CiConfigError(f"(<unknown>): {exc}") from None
    except RecursionError:
        raise CiConfigError("The parsed YAML is too big") from None
    finally:
        loader.dispose()


def _reject_duplicate_names(root: yaml.MappingNode) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _ in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        if (key.tag, key.value) in seen:
            location = key.value if key.value in GITLAB_ROOT_KEYWORDS else f"jobs:{key.value}"
            _fail(location, "is defined more than once")
        seen.add((key.tag, key.value))


def _check_size(config: object) -> None:
    """Count the parsed document, aliases included, and stop as soon as it is too big."""
    count, stack = 0, [(config, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise CiConfigError("The parsed YAML is too big")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _check_keys(location: str, keys: list[object], allowed: tuple[str, ...]) -> None:
    unknown = [str(key) for key in keys if key not in allowed]
    if unknown:
        _fail(location, f"config contains unknown keys: {', '.join(unknown)}")


def _hidden(name: object) -> bool:
    return isinstance(name, str) and name.startswith(".")


def _stages(value: object) -> tuple[str, ...]:
    """``.pre``, the declared stages (default build, test, deploy), ``.post``; a repeated name counts once."""
    declared: list[str] | None
    if value is None:
        declared = list(DEFAULT_STAGES)
    else:
        declared = _flat_strings(value, MAX_COMMAND_NESTING)
        if declared is None:
            _fail("stages", "config should be an array of strings or a nested array of strings up to 10 levels deep")
    middle = [stage for stage in declared if stage not in (EDGE_PRE, EDGE_POST)]
    return tuple(dict.fromkeys([EDGE_PRE, *middle, EDGE_POST]))


def _flat_strings(value: object, levels: int) -> list[str] | None:
    """A list of strings, nested at most ``levels`` deep, flattened; None when it is not one."""
    if not isinstance(value, list) or levels == 0:
        return None
    flat: list[str] = []
    for item in value:
        if isinstance(item, str):
            flat.append(item)
            continue
        inner = _flat_strings(item, levels - 1)
        if inner is None:
            return None
        flat.extend(inner)
    return flat


def _commands(value: object, location: str) -> tuple[str, ...]:
    """``Entry::Commands``: one string, or a nested array of strings."""
    if isinstance(value, str):
        return (value,)
    flat = _flat_strings(value, MAX_COMMAND_NESTING)
    if flat is None:
        _fail(location, "config should be a string or a nested array of strings up to 10 levels deep")
    return tuple(flat)


def _variables(value: object, location: str, data_keys: tuple[str, ...]) -> dict[str, str]:
    """Names to string values; a hash value may carry ``data_keys`` (``value``, and a description
    at the top level), but not ``expand`` or ``options``, which jobsvc cannot honour."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        _fail(location, "config should be a hash of key value pairs")
    result: dict[str, str] = {}
    for name, raw in value.items():
        if isinstance(raw, dict):
            _check_data_keys(f"{location}:{name}", raw, data_keys)
            raw = raw.get("value", "")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            _fail(location, "config should be a hash of key value pairs")
        result[name] = str(raw)
    return result


def _check_data_keys(location: str, value: dict, allowed: tuple[str, ...]) -> None:
    invalid = [str(key) for key in value if key not in allowed]
    if invalid:
        _fail(location, f"config uses invalid data keys: {', '.join(invalid)}")


def _defaults(value: object) -> dict[str, object]:
    """The ``default:`` entries a job inherits when it does not set them itself."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail("default", "config should be a hash")
    _check_keys("default", list(value), DEFAULT_KEYS)
    parsed: dict[str, object] = {}
    for key in ("before_script", "after_script"):
        if value.get(key) is not None:
            parsed[key] = _commands(value[key], f"default:{key}")
    if value.get("tags") is not None:
        parsed["tags"] = _tags(value["tags"], "default:tags")
    if value.get("artifacts") is not None:
        parsed["artifacts"] = _artifacts(value["artifacts"], "default:artifacts")
    return parsed


def _tags(value: object, location: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        _fail(location, "config should be an array of strings")
    return tuple(value)


def _artifacts(value: object, location: str) -> Artifacts:
    if not isinstance(value, dict):
        _fail(location, "config should be a hash")
    _check_keys(location, list(value), ARTIFACTS_KEYS)
    paths = [] if value.get("paths") is None else value["paths"]
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        _fail(location, "paths should be an array of strings")
    when = "on_success" if value.get("when") is None else value["when"]
    if when not in ARTIFACTS_WHEN:
        _fail(location, "when should be on_success, on_failure or always")
    expire_in = value.get("expire_in")
    if expire_in is not None and not _is_duration(expire_in):
        _fail(location, "expire in should be a duration")
    return Artifacts(paths=tuple(paths), expire_in=expire_in, when=when)


def _is_duration(value: object) -> bool:
    """A string ChronicDuration would read (``expire_in: never`` included)."""
    if not isinstance(value, str):
        return False
    try:
        parse_duration(value)
    except DurationError:
        return False
    return True


def _needs(value: object, location: str) -> tuple[str, ...]:
    """Job names, given as strings or as ``{job: name}``."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        _fail(location, "config can only be a hash or an array")
    names: list[str] = []
    for need in value:
        if isinstance(need, dict):
            _check_keys(f"{location}:need", list(need), NEED_KEYS)
            need = need.get("job")
        if not isinstance(need, str):
            _fail(f"{location}:need", "config should be a string or a hash with a job")
        names.append(need)
    return tuple(names)


def _job(name: object, value: object, root_variables: dict[str, str], defaults: dict[str, object]) -> dict[str, Any]:
    """A job's fields (all but ``stage_idx``), with what it inherits from ``default:`` and the top-level variables."""
    location = f"jobs:{name}"
    if not isinstance(name, str):
        _fail(location, "name should be a symbol")
    if len(name) > MAX_JOB_NAME:
        _fail(location, f"name is too long (maximum is {MAX_JOB_NAME} characters)")
    if isinstance(value, dict):
        _check_keys(location, list(value), JOB_KEYS)
    if not isinstance(value, dict) or "script" not in value:
        _fail(f"jobs {name}", "config should implement the script:, run:, or trigger: keyword")
    if value["script"] in (None, "", []):
        _fail(location, "script can't be blank")
    when = _when(value.get("when"), location)
    return {
        "name": name,
        "stage": _stage(value.get("stage"), location),
        "script": _commands(value["script"], f"{location}:script"),
        "before_script": _inherit(value, defaults, "before_script", _commands, location),
        "after_script": _inherit(value, defaults, "after_script", _commands, location),
        "when": when,
        "start_in": _start_in(value.get("start_in"), location, when),
        "allow_failure": _allow_failure(value.get("allow_failure"), location, when),
        "tags": _inherit(value, defaults, "tags", _tags, location),
        "variables": {**root_variables, **_variables(value.get("variables"), f"{location}:variables", ("value",))},
        "artifacts": _inherit(value, defaults, "artifacts", _artifacts, location),
        "needs": None if value.get("needs") is None else _needs(value["needs"], f"{location}:needs"),
    }


def _inherit(
    value: dict, defaults: dict[str, object], key: str, parse: Callable[[object, str], object], location: str
) -> Any:
    """The job's own entry, else the ``default:`` one (GitLab's ``inherit: true`` entries), else nothing."""
    if value.get(key) is not None:
        return parse(value[key], f"{location}:{key}")
    return defaults.get(key, None if key == "artifacts" else ())


def _stage(value: object, location: str) -> str:
    if value is None:
        return DEFAULT_STAGE
    if not isinstance(value, str):
        _fail(f"{location}:stage", "config should be a string")
    return value


def _when(value: object, location: str) -> str:
    if value is None:
        return "on_success"
    if value not in ALLOWED_WHEN:
        _fail(location, f"when should be one of: {', '.join(ALLOWED_WHEN)}")
    return str(value)


def _start_in(value: object, location: str, when: str) -> str | None:
    """Required by, and only allowed for, a delayed job: a duration of at most a week."""
    if when != "delayed":
        if value is not None:
            _fail(location, "start in must be blank")
        return None
    seconds = parse_duration(str(value)) if _is_duration(value) else None
    if not seconds:
        _fail(location, "start in should be a duration")
    if seconds > MAX_START_IN:
        _fail(location, "start in should not exceed the limit")
    return str(value)


def _allow_failure(value: object, location: str, when: str) -> bool:
    """A boolean; unset, a manual job may fail and the others may not. The hash form
    (``exit_codes``) is refused."""
    if value is None:
        return when == "manual"
    if isinstance(value, dict):
        _check_keys(f"{location}:allow_failure", list(value), ())
    if not isinstance(value, bool):
        _fail(location, "allow failure should be a hash or a boolean value")
    return value


def _check_logic(jobs: list[dict[str, Any]], stages: tuple[str, ...]) -> None:
    """``YamlProcessor#run_logical_validations!``: stages exist, needs exist in the same or an
    earlier stage and appear once, and no needs form a cycle."""
    stage_of = {job["name"]: job["stage"] for job in jobs}
    for job in jobs:
        name, stage = job["name"], job["stage"]
        if stage not in stages:
            raise CiConfigError(
                f"{name} job: chosen stage {stage} does not exist; available stages are {', '.join(stages)}"
            )
        needs = job["needs"] or ()
        for need in needs:
            if need not in stage_of:
                raise CiConfigError(f"{name} job: undefined need: {need}")
            if stage_of[need] not in stages or stages.index(stage_of[need]) > stages.index(stage):
                raise CiConfigError(f"{name} job: need {need} is not defined in current or prior stages")
        duplicated = [need for need, count in Counter(needs).items() if count > 1]
        if duplicated:
            raise CiConfigError(f"{name} has the following needs duplicated: {', '.join(duplicated)}.")
    try:
        TopologicalSorter({job["name"]: job["needs"] or () for job in jobs}).prepare()
    except CycleError:
        raise CiConfigError("The pipeline has circular dependencies") from None
