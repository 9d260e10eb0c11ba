"""Reading ``.gitlab-ci.yml`` (domain.ciconfig): what it understands, and the whole refusal of everything else."""

from __future__ import annotations

from textwrap import dedent

import pytest

from jobsvc.domain.ciconfig import (
    Artifacts,
    CiConfigError,
    JobDefinition,
    PipelineDefinition,
    parse_ci_config,
)

FULL = """
stages: [build, test, deploy]

variables:
  GLOBAL: global
  NUMBER: 3
  DESCRIBED: {value: hello, description: shown in the run form}

default:
  before_script: [echo setup]
  after_script: echo teardown
  tags: [docker]
  artifacts:
    paths: [logs/]
    when: always

.template: &template
  stage: test
  tags: [linux]
  script:
    - make check

build:
  stage: build
  script:
    - make
    - [make install, make dist]
  artifacts:
    paths: [dist/]
    expire_in: 1 week
  variables:
    GLOBAL: overridden
    LOCAL: local

unit:
  <<: *template
  needs: [build]
  allow_failure: true

lint:
  <<: *template
  script: make lint
  before_script: []
  when: always
  needs: []

review:
  stage: deploy
  script: deploy review
  when: manual

production:
  stage: deploy
  script: deploy production
  when: delayed
  start_in: 30 minutes
  needs:
    - job: build
    - unit
"""


def parse(text: str, **variables: str) -> PipelineDefinition:
    return parse_ci_config(dedent(text), ref="main", variables=variables)


def refusal(text: str) -> str:
    with pytest.raises(CiConfigError) as caught:
        parse(text)
    assert str(caught.value) == caught.value.message
    return caught.value.message


def test_a_full_definition() -> None:
    inherited = {"before_script": ("echo setup",), "after_script": ("echo teardown",)}
    logs = Artifacts(paths=("logs/",), when="always")
    root = {"GLOBAL": "global", "NUMBER": "3", "DESCRIBED": "hello"}
    assert parse(FULL, TRIGGERED="yes") == PipelineDefinition(
        ref="main",
        stages=(".pre", "build", "test", "deploy", ".post"),
        jobs=(
            JobDefinition(
                name="build",
                stage="build",
                stage_idx=1,
                script=("make", "make install", "make dist"),
                tags=("docker",),
                variables={**root, "GLOBAL": "overridden", "LOCAL": "local"},
                artifacts=Artifacts(paths=("dist/",), expire_in="1 week"),
                **inherited,
            ),
            JobDefinition(
                name="unit",
                stage="test",
                stage_idx=2,
                script=("make check",),
                allow_failure=True,
                tags=("linux",),
                variables=root,
                artifacts=logs,
                needs=("build",),
                **inherited,
            ),
            JobDefinition(
                name="lint",
                stage="test",
                stage_idx=2,
                script=("make lint",),
                after_script=("echo teardown",),
                when="always",
                tags=("linux",),
                variables=root,
                artifacts=logs,
                needs=(),
            ),
            JobDefinition(
                name="review",
                stage="deploy",
                stage_idx=3,
                script=("deploy review",),
                when="manual",
                allow_failure=True,
                tags=("docker",),
                variables=root,
                artifacts=logs,
                **inherited,
            ),
            JobDefinition(
                name="production",
                stage="deploy",
                stage_idx=3,
                script=("deploy production",),
                when="delayed",
                start_in="30 minutes",
                tags=("docker",),
                variables=root,
                artifacts=logs,
                needs=("build", "unit"),
                **inherited,
            ),
        ),
        variables={"TRIGGERED": "yes"},
    )


def test_defaults_without_stages_default_or_variables() -> None:
    definition = parse("rspec:\n  script: rspec\n")
    assert definition.stages == (".pre", "build", "test", "deploy", ".post")
    assert definition.jobs == (JobDefinition(name="rspec", stage="test", stage_idx=2, script=("rspec",)),)
    assert definition.variables == {}


def test_declared_stages_are_wrapped_in_pre_and_post_once() -> None:
    definition = parse(
        """
        stages: [.post, [compile, [check]], compile, .pre, ship]
        a: {stage: ship, script: x}
        b: {stage: .pre, script: x}
        c: {stage: compile, script: x}
        d: {stage: .post, script: x}
        """
    )
    assert definition.stages == (".pre", "compile", "check", "ship", ".post")
    assert [(job.name, job.stage_idx) for job in definition.jobs] == [("b", 0), ("c", 1), ("a", 3), ("d", 4)]


def test_jobs_keep_definition_order_within_a_stage() -> None:
    definition = parse(
        """
        z: {stage: deploy, script: x}
        y: {stage: build, script: x}
        x: {stage: deploy, script: x}
        w: {stage: build, script: x}
        """
    )
    assert [job.name for job in definition.jobs] == ["y", "w", "z", "x"]


def test_hidden_jobs_are_templates_and_never_jobs() -> None:
    definition = parse(
        """
        .unused:
          image: a hidden job is not checked
          rules: [{when: never}]
        .base: &base
          script: [echo base]
        .scripts:
          - &setup echo setup
        job:
          <<: *base
          before_script: [*setup]
        """
    )
    assert [(job.name, job.before_script, job.script) for job in definition.jobs] == [
        ("job", ("echo setup",), ("echo base",))
    ]


def test_what_a_template_brings_in_is_checked() -> None:
    text = ".base: &base\n  image: ruby\n  script: x\njob:\n  <<: *base\n"
    assert refusal(text) == "jobs:job config contains unknown keys: image"


def test_only_hidden_jobs_is_no_pipeline() -> None:
    assert refusal(".hidden:\n  script: x\n") == "jobs config should contain at least one visible job"


def test_a_root_merge_key_is_no_duplicate() -> None:
    definition = parse(
        """
        .shared: &shared
          build: {script: shared}
        <<: *shared
        build: {script: mine}
        """
    )
    assert [job.script for job in definition.jobs] == [("mine",)]


def test_a_job_may_override_or_empty_what_default_gives() -> None:
    definition = parse(
        """
        default:
          before_script: echo default
          tags: [shared]
          artifacts: {paths: [a]}
        own:
          script: x
          before_script: echo own
          tags: [mine]
          artifacts: {paths: [b], expire_in: never}
        empty:
          script: x
          before_script: []
          tags: []
        unset:
          script: x
          before_script:
          tags:
        """
    )
    own, empty, unset = definition.jobs
    assert (own.before_script, own.tags, own.artifacts) == (
        ("echo own",),
        ("mine",),
        Artifacts(paths=("b",), expire_in="never"),
    )
    assert (empty.before_script, empty.tags, empty.artifacts) == ((), (), Artifacts(paths=("a",)))
    assert (unset.before_script, unset.tags) == (("echo default",), ("shared",))


def test_allow_failure_defaults_by_when() -> None:
    definition = parse(
        """
        manual: {script: x, when: manual}
        blocking: {script: x, when: manual, allow_failure: false}
        delayed: {script: x, when: delayed, start_in: 1 day}
        normal: {script: x}
        optional: {script: x, allow_failure: true}
        """
    )
    assert {job.name: job.allow_failure for job in definition.jobs} == {
        "manual": True,
        "blocking": False,
        "delayed": False,
        "normal": False,
        "optional": True,
    }


def test_needs_forms() -> None:
    definition = parse(
        """
        a: {stage: build, script: x}
        b: {stage: test, script: x, needs: {job: a}}
        c: {stage: test, script: x, needs: [a, {job: b}]}
        d: {stage: test, script: x, needs: null}
        """
    )
    assert [job.needs for job in definition.jobs] == [None, ("a",), ("a", "b"), None]


def test_an_error_anywhere_refuses_the_whole_definition() -> None:
    assert refusal("good:\n  script: x\nbad:\n  script: x\n  rules: []\n") == (
        "jobs:bad config contains unknown keys: rules"
    )


@pytest.mark.parametrize(
    "key",
    [
        "rules", "only", "except", "extends", "image", "services", "cache", "trigger", "dependencies", "retry",
        "timeout", "parallel", "environment", "coverage", "interruptible", "resource_group", "inherit", "release",
        "secrets", "id_tokens", "hooks", "pages", "publish", "manual_confirmation", "run", "type", "identity",
    ],
)  # fmt: skip
def test_refused_job_keys(key: str) -> None:
    assert refusal(f"build:\n  script: x\n  {key}: something\n") == f"jobs:build config contains unknown keys: {key}"


def test_every_refused_key_of_a_job_is_named_in_order() -> None:
    text = "deploy:\n  extends: .x\n  stage: deploy\n  rules: []\n  image: ruby\n"
    assert refusal(text) == "jobs:deploy config contains unknown keys: extends, rules, image"


@pytest.mark.parametrize(
    "key", ["include", "workflow", "image", "services", "cache", "before_script", "after_script", "spec"]
)
def test_refused_top_level_keys(key: str) -> None:
    assert refusal(f"{key}: something\nbuild:\n  script: x\n") == f"root config contains unknown keys: {key}"


@pytest.mark.parametrize("key", ["image", "services", "cache", "interruptible", "timeout", "retry", "hooks"])
def test_refused_default_keys(key: str) -> None:
    text = f"default:\n  {key}: something\nbuild:\n  script: x\n"
    assert refusal(text) == f"default config contains unknown keys: {key}"


@pytest.mark.parametrize("key", ["name", "untracked", "exclude", "reports", "expose_as", "public", "access"])
def test_refused_artifacts_keys(key: str) -> None:
    text = f"build:\n  script: x\n  artifacts:\n    paths: [a]\n    {key}: something\n"
    assert refusal(text) == f"jobs:build:artifacts config contains unknown keys: {key}"


@pytest.mark.parametrize("key", ["artifacts", "optional", "project", "pipeline", "ref"])
def test_refused_needs_keys(key: str) -> None:
    text = f"a: {{script: x}}\nb:\n  script: x\n  needs:\n    - job: a\n      {key}: something\n"
    assert refusal(text) == f"jobs:b:needs:need config contains unknown keys: {key}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Please provide content of .gitlab-ci.yml"),
        ("  \n\n", "Please provide content of .gitlab-ci.yml"),
        ("# only a comment\n", "Invalid configuration format"),
        ("- a\n- b\n", "Invalid configuration format"),
        ("just text", "Invalid configuration format"),
        (
            "build:\n  script: x\nbuild:\n  script: y\n",
            "jobs:build is defined more than once",
        ),
        ("stages: [a]\nstages: [b]\nx: {script: x}\n", "stages is defined more than once"),
        (
            "build:\n  stage: build\n",
            "jobs build config should implement the script:, run:, or trigger: keyword",
        ),
        ("build: echo\n", "jobs build config should implement the script:, run:, or trigger: keyword"),
        ("build:\n", "jobs build config should implement the script:, run:, or trigger: keyword"),
        ("1:\n  script: x\n", "jobs:1 name should be a symbol"),
        ("Build:\n  script: x\n  Rules: []\n", "jobs:build config contains unknown keys: rules"),
        ("build:\n  script: []\n", "jobs:build script can't be blank"),
        ("build:\n  script: ''\n", "jobs:build script can't be blank"),
        ("build:\n  script:\n", "jobs:build script can't be blank"),
        (
            "build:\n  script: {a: b}\n",
            "jobs:build:script config should be a string or a nested array of strings up to 10 levels deep",
        ),
        (
            "build:\n  script: [1]\n",
            "jobs:build:script config should be a string or a nested array of strings up to 10 levels deep",
        ),
        (
            "build:\n  script: " + "[" * 11 + "x" + "]" * 11 + "\n",
            "jobs:build:script config should be a string or a nested array of strings up to 10 levels deep",
        ),
        (
            "build:\n  script: x\n  after_script: 3\n",
            "jobs:build:after_script config should be a string or a nested array of strings up to 10 levels deep",
        ),
        (
            "build:\n  script: x\n  when: later\n",
            "jobs:build when should be one of: on_success, on_failure, always, manual, delayed",
        ),
        ("build:\n  script: x\n  stage: [build]\n", "jobs:build:stage config should be a string"),
        (
            "build:\n  script: x\n  stage: nope\n",
            "build job: chosen stage nope does not exist; available stages are .pre, build, test, deploy, .post",
        ),
        (
            "stages: [one]\nbuild:\n  script: x\n",
            "build job: chosen stage test does not exist; available stages are .pre, one, .post",
        ),
        ("build:\n  script: x\n  tags: docker\n", "jobs:build:tags config should be an array of strings"),
        ("build:\n  script: x\n  tags: [1]\n", "jobs:build:tags config should be an array of strings"),
        (
            "build:\n  script: x\n  allow_failure: sometimes\n",
            "jobs:build allow failure should be a hash or a boolean value",
        ),
        (
            "build:\n  script: x\n  allow_failure: {exit_codes: [1]}\n",
            "jobs:build:allow_failure config contains unknown keys: exit_codes",
        ),
        ("build:\n  script: x\n  when: delayed\n", "jobs:build start in should be a duration"),
        ("build:\n  script: x\n  when: delayed\n  start_in: soon\n", "jobs:build start in should be a duration"),
        ("build:\n  script: x\n  when: delayed\n  start_in: 0\n", "jobs:build start in should be a duration"),
        (
            "build:\n  script: x\n  when: delayed\n  start_in: 2 weeks\n",
            "jobs:build start in should not exceed the limit",
        ),
        ("build:\n  script: x\n  start_in: 1 hour\n", "jobs:build start in must be blank"),
        ("build:\n  script: x\n  artifacts: [a]\n", "jobs:build:artifacts config should be a hash"),
        (
            "build:\n  script: x\n  artifacts: {paths: a}\n",
            "jobs:build:artifacts paths should be an array of strings",
        ),
        (
            "build:\n  script: x\n  artifacts: {when: sometimes}\n",
            "jobs:build:artifacts when should be on_success, on_failure or always",
        ),
        (
            "build:\n  script: x\n  artifacts: {expire_in: a fortnight}\n",
            "jobs:build:artifacts expire in should be a duration",
        ),
        ("build:\n  script: x\n  artifacts: {expire_in: 3}\n", "jobs:build:artifacts expire in should be a duration"),
        (
            "default:\n  artifacts: {when: later}\nbuild:\n  script: x\n",
            "default:artifacts when should be on_success, on_failure or always",
        ),
        ("variables: [A]\nbuild:\n  script: x\n", "variables config should be a hash of key value pairs"),
        ("variables: {A: [1]}\nbuild:\n  script: x\n", "variables config should be a hash of key value pairs"),
        ("variables: {A: true}\nbuild:\n  script: x\n", "variables config should be a hash of key value pairs"),
        ("variables: {A: }\nbuild:\n  script: x\n", "variables config should be a hash of key value pairs"),
        (
            "variables: {A: {value: a, options: [a, b]}}\nbuild:\n  script: x\n",
            "variables:a config uses invalid data keys: options",
        ),
        (
            "build:\n  script: x\n  variables: {A: {value: a, expand: false}}\n",
            "jobs:build:variables:a config uses invalid data keys: expand",
        ),
        (
            "build:\n  script: x\n  variables: {A: {value: a, description: text}}\n",
            "jobs:build:variables:a config uses invalid data keys: description",
        ),
        (
            "build:\n  script: x\n  variables: {A: {value: [1]}}\n",
            "jobs:build:variables config should be a hash of key value pairs",
        ),
        (
            "stages: build\nbuild:\n  script: x\n",
            "stages config should be an array of strings or a nested array of strings up to 10 levels deep",
        ),
        ("default: [a]\nbuild:\n  script: x\n", "default config should be a hash"),
        (
            "default: {before_script: {a: b}}\nbuild:\n  script: x\n",
            "default:before_script config should be a string or a nested array of strings up to 10 levels deep",
        ),
        ("default: {tags: docker}\nbuild:\n  script: x\n", "default:tags config should be an array of strings"),
        ("build:\n  script: x\n  needs: build\n", "jobs:build:needs config can only be a hash or an array"),
        ("build:\n  script: x\n  needs: [1]\n", "jobs:build:needs:need config should be a string or a hash with a job"),
        (
            "build:\n  script: x\n  needs: [{}]\n",
            "jobs:build:needs:need config should be a string or a hash with a job",
        ),
        ("build:\n  script: x\n  needs: [nothing]\n", "build job: undefined need: nothing"),
        (".tpl:\n  script: x\nbuild:\n  script: x\n  needs: [.tpl]\n", "build job: undefined need: .tpl"),
        (
            "build:\n  stage: build\n  script: x\n  needs: [test]\ntest:\n  script: x\n",
            "build job: need test is not defined in current or prior stages",
        ),
        (
            "build:\n  stage: build\n  script: x\n  needs: [test]\ntest:\n  stage: nope\n  script: x\n",
            "build job: need test is not defined in current or prior stages",
        ),
        (
            "build:\n  script: x\ntest:\n  script: x\n  needs: [build, build]\n",
            "test has the following needs duplicated: build.",
        ),
        ("a:\n  script: x\n  needs: [b]\nb:\n  script: x\n  needs: [a]\n", "The pipeline has circular dependencies"),
        ("a:\n  script: x\n  needs: [a]\n", "The pipeline has circular dependencies"),
        ("x" * 256 + ":\n  script: x\n", f"jobs:{'x' * 256} name is too long (maximum is 255 characters)"),
    ],
)
def test_refusal_messages(text: str, message: str) -> None:
    assert refusal(text) == message


@pytest.mark.parametrize(
    "text",
    [
        "build:\n  script: [x\n",
        "build: {script: x\n",
        "build:\n  script: x\n\tstage: build\n",
        "---\nspec: {}\n---\nbuild:\n  script: x\n",
    ],
)
def test_yaml_syntax_errors_read_like_psychs(text: str) -> None:
    assert refusal(text).startswith("(<unknown>): ")


def test_gitlab_only_yaml_tags_are_refused() -> None:
    message = refusal("build:\n  script: !reference [.setup, script]\n")
    assert message.startswith("(<unknown>): could not determine a constructor for the tag '!reference'")


def test_aliases_cannot_blow_the_document_up() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    lines += ["build:", "  script: *a8"]
    assert refusal("\n".join(lines) + "\n") == "The parsed YAML is too big"


def test_deep_nesting_is_too_big() -> None:
    assert refusal("build:\n  script: " + "[" * 150 + "x" + "]" * 150 + "\n") == "The parsed YAML is too big"
