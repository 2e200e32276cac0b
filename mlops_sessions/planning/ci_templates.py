"""CI workflows (GitHub Actions, GitLab CI) that run the pipeline's own nox sessions.

Pure: options in, YAML text out. A CI job is a few lines of setup and then exactly the nox
session a developer runs on a laptop, so "passed locally" and "passed in CI" mean the same.

Shape (the seed's order): test -> train -> evaluate (the gate) -> build (build, scan, push)
-> deploy [-> deploy-production after a manual approval]. Only stages whose nox session
exists are generated; re-running ``mlops ci`` after new steps land adds their jobs.

Why build, scan and push share one job: the image exists only in the Docker engine of the
runner that built it; a separate push job on a fresh runner would have nothing to push.

Between jobs the ``.mlops`` store travels as an artifact, and later jobs run
``nox --no-dependencies`` so the training of the train job is not repeated: the evaluate job
finds the stored run by its cache key, the deploy job finds the pushed image in the store.

With ``store.remote`` there is no store artifact: every job reads through the shared store
(so a pipeline reuses the runs and judges against the blessing of every other pipeline and
of the laptops), ``mlops store pull`` starts each later job with its records and
``mlops store push`` ends each job by uploading image and deploy records. Credentials come
from the CI's secret store (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; the endpoint from the
variable MLOPS_STORE_ENDPOINT), never from the file.

With ``images.<name>.sign`` the build job installs cosign (and syft for ``sign.sbom``)
before ``push``, at the versions the project's own tests run, and hands the push the
signing key from the CI's secret store (``COSIGN_KEY``, for ``sign.key: env://COSIGN_KEY``,
and ``COSIGN_PASSWORD``). GitHub installs them with the official actions pinned by commit
(cosign-installer verifies the release it installs with a cosign whose checksum is in the
action itself); GitLab downloads the release binaries and checks them against the
release's published checksum file. With ``deploy.verify`` the deploy jobs install cosign,
log in to the registry (the signatures live beside the image) and get the public key's
variable when it is an ``env://`` key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from mlops_sessions import pipeline

# The sessions CI runs, in order; which job runs each is the table's `ci_stage`.
STAGES = tuple(step.name for step in pipeline.STEPS if step.ci_stage is not None)
MAIN_ONLY = frozenset({"build", "deploy", "deploy-production"})
PROVIDERS = ("github", "gitlab")
DEFAULT_PATHS = {"github": ".github/workflows/mlops.yml", "gitlab": ".gitlab-ci.yml"}
REPORT_DIR = "mlops-report"
ROLLOUT_REPORT_DIR = "mlops-rollout-report"
# A progressive deploy waits len(rollout.steps) x analysis.interval plus the applies: give
# the deploy jobs room (the runners' defaults, 60 min on GitLab, would cut a long rollout;
# a cut job aborts its rollout cleanly, but the release would never finish).
DEPLOY_TIMEOUT_MINUTES = 180
STORE_RETENTION_DAYS = 7
# The signing tools CI installs: the versions tests/cluster/components.py builds and the
# signing tests run (a test keeps them equal).
COSIGN_VERSION = "v3.1.3"
SYFT_VERSION = "v1.57.2"
# The official installers, pinned by commit: a tag can be moved, a commit cannot.
COSIGN_INSTALLER = "sigstore/cosign-installer@6f9f17788090df1f26f669e9d70d6ae9567deba6"  # v4.1.2
SYFT_INSTALLER = (
    "anchore/sbom-action/download-syft@e22c389904149dbc22b58101806040fa8d37a610"  # v0.24.0
)
COSIGN_RELEASES = "https://github.com/sigstore/cosign/releases/download"
SYFT_RELEASES = "https://github.com/anchore/syft/releases/download"
PASSWORD_SECRET = "COSIGN_PASSWORD"


@dataclass(frozen=True)
class CiSigning:
    """What signing and verifying need on the runner; the step fills it from the config."""

    sign: bool = False  # some image has images.<name>.sign: the push job signs
    sbom: bool = False  # and attaches an SBOM (sign.sbom): syft too
    sign_secrets: tuple[str, ...] = ()  # env://VAR signing keys: VAR from the secret store
    verify: bool = False  # some model has deploy.verify: the deploy jobs verify
    verify_secrets: tuple[str, ...] = ()  # env://VAR public keys: VAR from the secret store


@dataclass(frozen=True)
class CiOptions:
    """Everything a workflow depends on; the step fills it from Config and the CLI."""

    sessions: tuple[str, ...]  # the nox sessions that exist (pipeline.sessions)
    install: tuple[str, ...]  # pip requirements for the runner: the plugin, nox, uv
    python: str = "3.11"
    branch: str = "main"
    profile: str | None = None  # MLOPS_PROFILE for the whole pipeline
    production_profile: str | None = None  # deploy-production runs under this profile
    cache_files: tuple[str, ...] = ("noxfile.py",)  # files whose change invalidates caches
    registries: tuple[str, ...] = ()  # registry hosts to log in to before push
    store: str = ".mlops"
    remote: str | None = None  # store.remote: jobs share it instead of a store artifact
    signing: CiSigning = CiSigning()


@dataclass(frozen=True)
class Job:
    name: str
    sessions: tuple[str, ...]  # run in this order, one `nox -s` each
    needs: str | None
    with_dependencies: bool  # only the first job lets nox run `requires=` (validate)
    download_store: bool  # continues from the previous job's .mlops
    upload_store: bool
    environment: str | None = None
    profile: str | None = None  # overrides the pipeline profile

    @property
    def main_only(self) -> bool:
        return self.name in MAIN_ONLY


def plan_jobs(options: CiOptions) -> list[Job]:
    """The jobs, in order, for the sessions that exist."""
    groups: list[tuple[str, tuple[str, ...]]] = []
    for stage, members in pipeline.ci_stages():
        present = tuple(s for s in members if s in options.sessions)
        if present:
            groups.append((stage, present))
        if stage == "deploy" and present and options.production_profile:
            groups.append(("deploy-production", present))

    jobs: list[Job] = []
    for index, (name, sessions) in enumerate(groups):
        previous = jobs[-1] if jobs else None
        environment = None
        profile = None
        if name == "deploy":
            environment = "staging" if options.production_profile else "production"
        elif name == "deploy-production":
            environment, profile = "production", options.production_profile
        jobs.append(
            Job(
                name=name,
                sessions=sessions,
                needs=previous.name if previous else None,
                with_dependencies=index == 0,
                download_store=previous is not None and previous.upload_store,
                upload_store=name != "test" and options.remote is None,
                environment=environment,
                profile=profile,
            )
        )
    return jobs


def nox_command(session: str, with_dependencies: bool) -> str:
    flags = "" if with_dependencies else "--no-dependencies "
    return f"nox {flags}-s {session}"


def _install_command(options: CiOptions) -> str:
    # `mlops store pull|push` run on the runner itself: they need the S3 client.
    extra = ("boto3>=1.36", "tenacity>=8.3") if options.remote else ()
    return "python -m pip install " + " ".join(f'"{r}"' for r in (*options.install, *extra))


# With a shared store: records in before a later job's sessions, records out after any job.
STORE_PULL = "mlops store pull"
STORE_PUSH = "mlops store push"


def _collect_reports(store: str) -> str:
    # Each evaluation writes runs/<run>/eval/<id>/report.md; copy them under readable names.
    return (
        f"mkdir -p {REPORT_DIR}\n"
        f"for f in {store}/runs/*/eval/*/report.md {store}/runs/*/eval/*/report.html; do\n"
        '  [ -e "$f" ] || continue\n'
        f"  name=$(printf '%s' \"${{f#{store}/runs/}}\" | tr / _)\n"
        f'  cp "$f" "{REPORT_DIR}/$name"\n'
        "done\n"
    )


def _collect_rollout_reports(store: str) -> str:
    # Each progressive deploy writes rollouts/<model>/<target>/r<N>/report.md.
    return (
        f"mkdir -p {ROLLOUT_REPORT_DIR}\n"
        f"for f in {store}/rollouts/*/*/r*/report.md; do\n"
        '  [ -e "$f" ] || continue\n'
        f"  name=$(printf '%s' \"${{f#{store}/rollouts/}}\" | tr / _)\n"
        f'  cp "$f" "{ROLLOUT_REPORT_DIR}/$name"\n'
        "done\n"
    )


def _comments(options: CiOptions, jobs: Sequence[Job], provider: str) -> str:
    secrets = (
        "repository or environment secrets (Settings > Secrets and variables > Actions)"
        if provider == "github"
        else "masked, protected CI/CD variables (Settings > CI/CD > Variables)"
    )
    lines = [
        "The pipeline of mlops.yaml: each job runs the same nox session as a laptop does.",
        f"Jobs: {' -> '.join(j.name for j in jobs)}.",
        f"Build and deploy run only on the {options.branch} branch.",
        *(
            [
                f"Shared store {options.remote}: credentials AWS_ACCESS_KEY_ID and",
                f"AWS_SECRET_ACCESS_KEY from {secrets}; MLOPS_STORE_ENDPOINT for a non-AWS store.",
            ]
            if options.remote
            else []
        ),
        "Jobs for steps mlops-sessions does not provide yet appear when you upgrade it and",
        "re-run `mlops ci`. Images are tagged with the commit SHA (images.<name>.tag.policy",
        "git-commit, the default): the commit CI checked out.",
    ]
    names = {j.name for j in jobs}
    if "build" in names and "push" in options.sessions:
        lines.append(f"Registry login: REGISTRY_USERNAME and REGISTRY_PASSWORD from {secrets}.")
        if not options.registries:
            lines.append("The registry host comes from the secret/variable REGISTRY.")
    lines += _signing_comments(options, names, provider, secrets)
    if "deploy" in names:
        if provider == "github":
            lines.append(
                "Cluster access: the secret KUBECONFIG (kubeconfig contents), per environment."
            )
            lines.append(
                "Approval: add required reviewers to the 'production' environment "
                "(Settings > Environments)."
            )
        else:
            lines.append("Cluster access: KUBECONFIG as a File-type CI/CD variable.")
            lines.append(
                "Approval: deploy to production is a manual job; protect the 'production' "
                "environment to choose who may run it."
            )
    return "".join(f"# {line}\n" for line in lines)


def _signing_comments(
    options: CiOptions, names: set[str], provider: str, secrets: str
) -> list[str]:
    signing = options.signing
    lines: list[str] = []
    pems: list[str] = []
    if signing.sign and "build" in names and "push" in options.sessions:
        keys = " and ".join((*signing.sign_secrets, PASSWORD_SECRET))
        lines.append(f"Signing: push signs with cosign {COSIGN_VERSION}; {keys} from {secrets}.")
        if not signing.sign_secrets:
            lines.append("A KMS signing key needs the KMS's credentials in the build job.")
        pems += signing.sign_secrets
    if signing.verify and "deploy" in names:
        keys = " and ".join(signing.verify_secrets)
        source = f"; {keys} from {secrets}" if keys else ""
        lines.append(f"Verifying: deploy checks signatures with cosign {COSIGN_VERSION}{source}.")
        pems += [k for k in signing.verify_secrets if k not in pems]
    if pems and provider == "gitlab":
        lines.append(f"Make {', '.join(pems)} File-type variables: a PEM key spans lines.")
    return lines


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line scripts, so the generated file reads like a hand-written one."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(document: dict[str, Any]) -> str:
    # A wide line limit: PyYAML would otherwise fold long shell commands over two lines.
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


# --- signing tools --------------------------------------------------------------------------


def _needs_registry(session: str, options: CiOptions) -> bool:
    # push writes to the registry; a verifying deploy reads the signatures stored there.
    return session == "push" or (session == "deploy" and options.signing.verify)


def _key_secrets(session: str, options: CiOptions) -> tuple[str, ...]:
    """The secret-store variables a session's signing or verifying reads."""
    signing = options.signing
    if session == "push" and signing.sign:
        return (*signing.sign_secrets, PASSWORD_SECRET)
    if session == "deploy" and signing.verify:
        return signing.verify_secrets
    return ()


def download_checked(url: str, sums_url: str, name: str, install: str) -> str:
    """Shell: download a release file, check it against the release's checksum file (a
    missing line fails too: sha256sum reads no checksum then), install it."""
    return (
        "(\n"
        "  set -eu\n"
        '  cd "$(mktemp -d)"\n'
        f"  curl -fsSLO --retry 3 {url}\n"
        f"  curl -fsSLo checksums.txt --retry 3 {sums_url}\n"
        f"  grep ' {name}$' checksums.txt | sha256sum --check --strict -\n"
        f"  {install}\n"
        ")\n"
    )


def cosign_install_script() -> str:
    name = "cosign-linux-amd64"
    return download_checked(
        f"{COSIGN_RELEASES}/{COSIGN_VERSION}/{name}",
        f"{COSIGN_RELEASES}/{COSIGN_VERSION}/cosign_checksums.txt",
        name,
        f"install -m 0755 {name} /usr/local/bin/cosign",
    )


def syft_install_script() -> str:
    number = SYFT_VERSION.removeprefix("v")
    name = f"syft_{number}_linux_amd64.tar.gz"
    return download_checked(
        f"{SYFT_RELEASES}/{SYFT_VERSION}/{name}",
        f"{SYFT_RELEASES}/{SYFT_VERSION}/syft_{number}_checksums.txt",
        name,
        f"tar -xzf {name} syft && install -m 0755 syft /usr/local/bin/syft",
    )


def _gh_signing_tools(session: str, options: CiOptions) -> list[dict[str, Any]]:
    signing = options.signing
    steps: list[dict[str, Any]] = []
    if (session == "push" and signing.sign) or (session == "deploy" and signing.verify):
        steps.append(
            {
                "name": f"Install cosign {COSIGN_VERSION}",
                "uses": COSIGN_INSTALLER,
                "with": {"cosign-release": COSIGN_VERSION},
            }
        )
    if session == "push" and signing.sign and signing.sbom:
        steps.append(
            {
                "name": f"Install syft {SYFT_VERSION} (the image's SBOM)",
                "uses": SYFT_INSTALLER,
                "with": {"syft-version": SYFT_VERSION},
            }
        )
    return steps


def _gl_signing_tools(session: str, options: CiOptions) -> list[str]:
    signing = options.signing
    script: list[str] = []
    if (session == "push" and signing.sign) or (session == "deploy" and signing.verify):
        script.append(cosign_install_script())
    if session == "push" and signing.sign and signing.sbom:
        script.append(syft_install_script())
    for variable in _key_secrets(session, options):
        if variable != PASSWORD_SECRET:
            # A PEM key is multi-line, so GitLab keeps it as a File-type variable (its path).
            script.append(
                f'if [ -f "${variable}" ]; then {variable}="$(cat "${variable}")"; '
                f"export {variable}; fi"
            )
    return script


# --- GitHub Actions ----------------------------------------------------------------------


def _gh_setup(options: CiOptions) -> list[dict[str, Any]]:
    key_files = ", ".join(f"'{f}'" for f in options.cache_files)
    prefix = f"mlops-nox-${{{{ runner.os }}}}-py{options.python}-"
    return [
        {"uses": "actions/checkout@v4"},
        {
            "uses": "actions/setup-python@v5",
            "with": {
                "python-version": options.python,
                "cache": "pip",
                "cache-dependency-path": "\n".join(options.cache_files) + "\n",
            },
        },
        {
            "name": "Cache nox virtualenvs and the uv cache",
            "uses": "actions/cache@v4",
            "with": {
                "path": ".nox\n~/.cache/uv\n",
                "key": f"{prefix}${{{{ hashFiles({key_files}) }}}}",
                "restore-keys": prefix,
            },
        },
        {"name": "Install mlops-sessions and nox", "run": _install_command(options)},
    ]


def _gh_job(job: Job, options: CiOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": job.name, "runs-on": "ubuntu-latest"}
    if job.needs:
        spec["needs"] = job.needs
    if job.main_only:
        spec["if"] = (
            f"github.event_name != 'pull_request' && github.ref == 'refs/heads/{options.branch}'"
        )
    if job.environment:
        spec["environment"] = job.environment
    if job.profile:
        spec["env"] = {"MLOPS_PROFILE": job.profile}
    if job.name == "evaluate":
        spec["permissions"] = {"contents": "read", "pull-requests": "write"}
    if job.name.startswith("deploy"):
        spec["timeout-minutes"] = DEPLOY_TIMEOUT_MINUTES
    steps = _gh_setup(options)
    if job.download_store:
        steps.append(
            {
                "name": "Continue from the previous job's store",
                "uses": "actions/download-artifact@v4",
                "with": {"name": f"mlops-store-{job.needs}", "path": options.store},
            }
        )
    if options.remote and job.needs:
        steps.append({"name": "Records of the shared store", "run": STORE_PULL})
    if job.name.startswith("deploy"):
        steps.append(
            {
                "name": "Write the kubeconfig from the secret store",
                "env": {"KUBECONFIG_DATA": "${{ secrets.KUBECONFIG }}"},
                "run": (
                    "umask 077\n"
                    'printf \'%s\' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"\n'
                    'echo "KUBECONFIG=$RUNNER_TEMP/kubeconfig" >> "$GITHUB_ENV"\n'
                ),
            }
        )
    for session in job.sessions:
        if _needs_registry(session, options):
            for registry in options.registries or ("${{ secrets.REGISTRY }}",):
                steps.append(
                    {
                        "name": "Log in to the registry (credentials from the secret store)",
                        "env": {
                            "REGISTRY": registry,
                            "REGISTRY_USERNAME": "${{ secrets.REGISTRY_USERNAME }}",
                            "REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD }}",
                        },
                        "run": (
                            'printf \'%s\' "$REGISTRY_PASSWORD" | docker login "$REGISTRY" '
                            '--username "$REGISTRY_USERNAME" --password-stdin'
                        ),
                    }
                )
        steps += _gh_signing_tools(session, options)
        step: dict[str, Any] = {"name": f"nox -s {session}"}
        secrets = _key_secrets(session, options)
        if secrets:
            step["env"] = {name: f"${{{{ secrets.{name} }}}}" for name in secrets}
        step["run"] = nox_command(session, job.with_dependencies)
        steps.append(step)
    if job.name == "evaluate":
        steps += [
            {
                "name": "Collect the evaluation report",
                "if": "always()",
                "run": _collect_reports(options.store),
            },
            {
                "name": "Attach the evaluation report to the run",
                "if": "always()",
                "uses": "actions/upload-artifact@v4",
                "with": {
                    "name": "evaluation-report",
                    "path": f"{REPORT_DIR}/",
                    "if-no-files-found": "warn",
                },
            },
            {
                "name": "Comment the evaluation report on the pull request",
                "if": (
                    f"always() && github.event_name == 'pull_request' && "
                    f"hashFiles('{REPORT_DIR}/*.md') != ''"
                ),
                # A pull request from a fork gets a read-only token; the report is still attached.
                "continue-on-error": True,
                "env": {
                    "GH_TOKEN": "${{ github.token }}",
                    "PR_NUMBER": "${{ github.event.pull_request.number }}",
                },
                "run": (
                    f'cat {REPORT_DIR}/*.md > "$RUNNER_TEMP/report.md"\n'
                    'gh pr comment "$PR_NUMBER" --body-file "$RUNNER_TEMP/report.md"\n'
                ),
            },
        ]
    if job.name.startswith("deploy"):
        steps += [
            {
                "name": "Collect the rollout report",
                "if": "always()",
                "run": _collect_rollout_reports(options.store),
            },
            {
                "name": "Attach the rollout report to the run",
                "if": "always()",
                "uses": "actions/upload-artifact@v4",
                "with": {
                    "name": f"rollout-report-{job.name}",
                    "path": f"{ROLLOUT_REPORT_DIR}/",
                    "if-no-files-found": "ignore",
                },
            },
        ]
    if options.remote and job.name != "test":
        steps.append(
            {
                "name": "Upload this job's records to the shared store",
                "if": "always()",
                "run": STORE_PUSH,
            }
        )
    if job.upload_store:
        steps.append(
            {
                "name": "Hand the store to the next job",
                "if": "always()" if job.name == "evaluate" else "success()",
                "uses": "actions/upload-artifact@v4",
                "with": {
                    "name": f"mlops-store-{job.name}",
                    "path": f"{options.store}/",
                    "include-hidden-files": True,
                    "retention-days": STORE_RETENTION_DAYS,
                },
            }
        )
    spec["steps"] = steps
    return spec


def github(options: CiOptions) -> str:
    jobs = plan_jobs(options)
    env: dict[str, Any] = {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if options.profile:
        env["MLOPS_PROFILE"] = options.profile
    if options.remote:
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
                "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
                "MLOPS_STORE_ENDPOINT": "${{ vars.MLOPS_STORE_ENDPOINT }}",
            }
        )
    document: dict[str, Any] = {
        "name": "mlops",
        "on": {
            "push": {"branches": [options.branch]},
            "pull_request": None,
            "workflow_dispatch": None,
        },
        "permissions": {"contents": "read"},
        "concurrency": {
            "group": "mlops-${{ github.ref }}",
            "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
        },
        "env": env,
        "jobs": {job.name: _gh_job(job, options) for job in jobs},
    }
    return _comments(options, jobs, "github") + "\n" + _dump(document)


# --- GitLab CI ----------------------------------------------------------------------------


def _gl_job(job: Job, options: CiOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {"stage": "deploy" if job.name.startswith("deploy") else job.name}
    if job.needs:
        spec["needs"] = [job.needs]
    main_rule = {"if": f'$CI_COMMIT_BRANCH == "{options.branch}"'}
    if job.name == "deploy-production":
        spec["rules"] = [{**main_rule, "when": "manual"}]
        spec["allow_failure"] = False  # a blocking manual job: the pipeline waits for approval
    elif job.main_only:
        spec["rules"] = [main_rule]
    if job.environment:
        spec["environment"] = {"name": job.environment}
    if job.name.startswith("deploy"):
        spec["timeout"] = f"{DEPLOY_TIMEOUT_MINUTES} minutes"
    variables: dict[str, str] = {}
    if job.profile:
        variables["MLOPS_PROFILE"] = job.profile
    if job.name == "build":
        # Docker-in-Docker: the image is built, scanned and pushed by this job's engine.
        spec["services"] = ["docker:27-dind"]
        variables.update({"DOCKER_HOST": "tcp://docker:2375", "DOCKER_TLS_CERTDIR": ""})
    if variables:
        spec["variables"] = variables
    script: list[str] = [STORE_PULL] if options.remote and job.needs else []
    for session in job.sessions:
        if _needs_registry(session, options):
            for registry in options.registries or ("$REGISTRY",):
                # The Docker SDK reads ~/.docker/config.json; the python image has no docker CLI.
                script.append(
                    'mkdir -p ~/.docker && umask 077 && printf \'{"auths": {"%s": {"auth": '
                    '"%s"}}}\' "' + registry + '" "$(printf \'%s:%s\' "$REGISTRY_USERNAME" '
                    '"$REGISTRY_PASSWORD" | base64 -w0)" > ~/.docker/config.json'
                )
        script += _gl_signing_tools(session, options)
        script.append(nox_command(session, job.with_dependencies))
    spec["script"] = script
    after = [_collect_reports(options.store)] if job.name == "evaluate" else []
    if job.name.startswith("deploy"):
        after.append(_collect_rollout_reports(options.store))
    if options.remote and job.name != "test":
        # after_script runs in a fresh shell, also when the script failed.
        after.append(STORE_PUSH)
    if after:
        spec["after_script"] = after
    if job.upload_store:
        paths = [f"{options.store}/"]
        artifacts: dict[str, Any] = {"paths": paths, "expire_in": f"{STORE_RETENTION_DAYS} days"}
        if job.name == "evaluate":
            # expose_as links the report from the merge request page.
            artifacts = {
                "when": "always",
                "expose_as": "evaluation report",
                "paths": [f"{REPORT_DIR}/", *paths],
                "expire_in": artifacts["expire_in"],
            }
        elif job.name.startswith("deploy"):
            artifacts = {
                "when": "always",
                "expose_as": "rollout report",
                "paths": [f"{ROLLOUT_REPORT_DIR}/", *paths],
                "expire_in": artifacts["expire_in"],
            }
        spec["artifacts"] = artifacts
    elif job.name == "evaluate":
        spec["artifacts"] = {
            "when": "always",
            "expose_as": "evaluation report",
            "paths": [f"{REPORT_DIR}/"],
            "expire_in": f"{STORE_RETENTION_DAYS} days",
        }
    elif job.name.startswith("deploy"):
        spec["artifacts"] = {
            "when": "always",
            "expose_as": "rollout report",
            "paths": [f"{ROLLOUT_REPORT_DIR}/"],
            "expire_in": f"{STORE_RETENTION_DAYS} days",
        }
    return spec


def gitlab(options: CiOptions) -> str:
    jobs = plan_jobs(options)
    stages: list[str] = []
    for job in jobs:
        stage = "deploy" if job.name.startswith("deploy") else job.name
        if stage not in stages:
            stages.append(stage)
    variables: dict[str, str] = {
        "PIP_CACHE_DIR": "$CI_PROJECT_DIR/.cache/pip",
        "UV_CACHE_DIR": "$CI_PROJECT_DIR/.cache/uv",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if options.profile:
        variables["MLOPS_PROFILE"] = options.profile
    document: dict[str, Any] = {
        "workflow": {
            "rules": [
                {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
                {"if": f'$CI_COMMIT_BRANCH == "{options.branch}"'},
            ]
        },
        "stages": stages,
        "variables": variables,
        "default": {
            "image": f"python:{options.python}-bookworm",
            "cache": {
                # GitLab keys a cache on at most two files.
                "key": {
                    "files": list(options.cache_files[:2]),
                    "prefix": f"mlops-py{options.python}",
                },
                "paths": [".cache/pip", ".cache/uv", ".nox"],
            },
            "before_script": [_install_command(options)],
        },
    }
    for job in jobs:
        document[job.name] = _gl_job(job, options)
    return _comments(options, jobs, "gitlab") + "\n" + _dump(document)


def render(provider: str, options: CiOptions) -> str:
    if provider == "github":
        return github(options)
    if provider == "gitlab":
        return gitlab(options)
    raise ValueError(provider)
