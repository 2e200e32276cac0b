"""``mlops ci github|gitlab``: write the CI workflow that runs the pipeline's nox sessions.

The text comes from :mod:`mlops_sessions.planning.ci_templates`; this module gathers its
inputs (sessions that exist, Python version, registries, profiles, pinned tool versions) and
writes the file through :func:`write_generated`, which keeps hand edits unless ``--force``.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.console import argtypes
from mlops_sessions.console.common import emit, load_config
from mlops_sessions.console.generated import write_generated
from mlops_sessions.errors import StepError
from mlops_sessions.planning import ci_templates, stamped

PRODUCTION_PROFILES = ("prod", "production")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "provider", metavar="PROVIDER", help=f"CI system: {' or '.join(ci_templates.PROVIDERS)}"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=argtypes.output_path,
        default=None,
        help="file to write (default: .github/workflows/mlops.yml or .gitlab-ci.yml "
        "next to mlops.yaml)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the file even if it was edited by hand"
    )
    parser.add_argument(
        "--branch",
        type=argtypes.branch,
        default="main",
        help="the branch that builds, pushes and deploys (default: main)",
    )
    parser.add_argument(
        "--production-profile",
        type=argtypes.dns_label,
        default=None,
        metavar="PROFILE",
        help="profile of the manually approved production deploy "
        "(default: 'prod' or 'production' if mlops.yaml declares it)",
    )
    parser.add_argument(
        "--install",
        action="append",
        type=argtypes.pip_requirement,
        default=None,
        metavar="REQUIREMENT",
        help="pip requirement the CI runner installs before nox (repeatable; "
        "default: this mlops-sessions, nox and uv, pinned)",
    )


def _pinned(distribution: str) -> str:
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def default_install() -> tuple[str, ...]:
    # Pinned to what generated the file, so CI runs the nox that supports --no-dependencies.
    return (_pinned("mlops-sessions"), _pinned("nox"), _pinned("uv"))


def production_profile(config: Config, chosen: str | None) -> str | None:
    if chosen is not None:
        if chosen not in config.profiles:
            declared = ", ".join(config.profiles) or "none"
            raise StepError(
                f"--production-profile {chosen}: mlops.yaml declares no such profile "
                f"(declared: {declared}); add it under 'profiles:' or pick another"
            )
        return chosen
    return next((p for p in PRODUCTION_PROFILES if p in config.profiles), None)


def options_for(
    config: Config, args: argparse.Namespace, sessions: list[str]
) -> ci_templates.CiOptions:
    cache_files = []
    if config.python.requirements:
        cache_files.append(config.python.requirements)
    cache_files.append("noxfile.py")
    registries = sorted({image.registry for image in config.images.values() if image.registry})
    return ci_templates.CiOptions(
        sessions=tuple(sessions),
        install=tuple(args.install) if args.install else default_install(),
        python=config.python.version or "3.11",
        branch=args.branch,
        profile=args.profile,
        production_profile=production_profile(config, args.production_profile),
        cache_files=tuple(cache_files),
        registries=tuple(registries),
        store=config.store,
        remote=config.store_remote.url if config.store_remote is not None else None,
        signing=signing_for(config),
    )


def _env_variables(references: list[str]) -> tuple[str, ...]:
    prefix = "env://"
    return tuple(sorted({r.removeprefix(prefix) for r in references if r.startswith(prefix)}))


def signing_for(config: Config) -> ci_templates.CiSigning:
    """What the CI jobs need to sign (images.<name>.sign) and verify (deploy.verify)."""
    signs = [image.sign for image in config.images.values() if image.sign is not None]
    verifies = [m.deploy.verify for m in config.models.values() if m.deploy.verify is not None]
    return ci_templates.CiSigning(
        sign=bool(signs),
        sbom=any(sign.sbom for sign in signs),
        sign_secrets=_env_variables([sign.key for sign in signs]),
        verify=bool(verifies),
        verify_secrets=_env_variables([verify.key for verify in verifies]),
    )


def signing_warnings(config: Config) -> list[str]:
    """A signing key CI cannot have: a private key file would have to be committed."""
    return [
        f"image '{name}' signs with the key file {image.sign.key}, which CI has only if it "
        f"is committed; set images.{name}.sign.key: env://COSIGN_KEY and keep the key in "
        "the CI secret COSIGN_KEY"
        for name, image in config.images.items()
        if image.sign is not None and "://" not in image.sign.key
    ]


def check_provider(provider: str) -> str:
    if provider in ci_templates.PROVIDERS:
        return provider
    from mlops_sessions.config.locate import suggest

    hint = suggest(provider, ci_templates.PROVIDERS)
    raise StepError(
        f"unknown CI provider '{provider}'{' — ' + hint if hint else ''}; supported: "
        f"{', '.join(ci_templates.PROVIDERS)} (e.g. `mlops ci github`)"
    )


def run(args: argparse.Namespace) -> int:
    from mlops_sessions import pipeline

    provider = check_provider(args.provider)
    config = load_config(args)
    sessions = [step.name for step in pipeline.sessions()]
    options = options_for(config, args, sessions)
    body = ci_templates.render(provider, options)
    text = stamped.stamp(body, f"mlops ci {provider}", "mlops.yaml")
    path = Path(args.output) if args.output else config.root / ci_templates.DEFAULT_PATHS[provider]
    status = write_generated(path, text, args.force, f"mlops ci {provider}")
    jobs = ci_templates.plan_jobs(options)
    missing = [s for s in ci_templates.STAGES if s not in sessions]
    warnings = [
        f"image '{name}' is tagged by policy '{image.tag.policy}', not the commit SHA; set "
        f"images.{name}.tag.policy: git-commit to tag CI builds with the commit"
        for name, image in config.images.items()
        if image.tag.policy != "git-commit"
    ] + signing_warnings(config)
    result: dict[str, Any] = {
        "provider": provider,
        "path": str(path),
        "status": status,
        "jobs": [
            {
                "name": j.name,
                "sessions": list(j.sessions),
                "needs": j.needs,
                "main_only": j.main_only,
                "environment": j.environment,
                "profile": j.profile,
            }
            for j in jobs
        ],
        "stages_not_available": missing,
        "warnings": warnings,
    }
    lines = [f"{path}: {status} ({' -> '.join(j.name for j in jobs)})"]
    if missing:
        lines.append(
            f"  not generated (no such step yet): {', '.join(missing)} — re-run "
            f"`mlops ci {provider}` once they are available"
        )
    lines += [f"  warning: {w}" for w in warnings]
    emit(args, result, "\n".join(lines))
    return 0
