"""The reviewed environments file: name → {context, namespace, production, overlay}.

`deploy/environments.yaml` by default; `--environments FILE` or `KIKIMIMI_KUBE_ENVIRONMENTS`
name another. Every error names the file, the line and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.yaml_lines import line_of

DEFAULT_FILE = Path("deploy/environments.yaml")
ENV_VARIABLE = "KIKIMIMI_KUBE_ENVIRONMENTS"

# A kubeconfig context name (GKE: gke_<project>_<location>_<cluster>) and a DNS-1123 label.
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CONTEXT = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$"


class EnvironmentsError(Exception):
    """The environments file is missing or invalid; the message says where and why."""


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    context: str = Field(pattern=_CONTEXT)
    namespace: str = Field(pattern=_NAME, max_length=63)
    production: bool
    # The kustomize overlay `make deploy ENV=…` applies, relative to the repository root.
    overlay: str | None = None


class _EnvironmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    context: str = Field(pattern=_CONTEXT)
    namespace: str = Field(pattern=_NAME, max_length=63)
    production: bool
    overlay: str | None = None


def parse_environments(text: str, source: str) -> dict[str, Environment]:
    try:
        document = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EnvironmentsError(f"{source}: not valid YAML: {exc}") from None
    if document is None or not isinstance(data, dict) or not data:
        raise EnvironmentsError(
            f"{source}: expected a mapping of environment name → "
            "{context, namespace, production[, overlay]}"
        )
    environments: dict[str, Environment] = {}
    problems: list[str] = []
    for name, spec in data.items():
        if not isinstance(name, str) or not re.match(_NAME, name):
            problems.append(
                f"{source}:{line_of(document, ())}: {name!r}: an environment name is "
                "lower-case letters, digits and '-'"
            )
            continue
        try:
            parsed = _EnvironmentSpec.model_validate(spec)
        except ValidationError as exc:
            for error in exc.errors():
                path = (name, *error["loc"])
                where = ".".join(str(p) for p in path)
                problems.append(f"{source}:{line_of(document, path)}: {where}: {error['msg']}")
            continue
        environments[name] = Environment(name=name, **parsed.model_dump())
    if problems:
        raise EnvironmentsError("\n".join(problems))
    return environments


def environments_file(option: str | None) -> Path:
    """The file to read: the option, else the environment variable, else the default."""
    return Path(option or os.environ.get(ENV_VARIABLE) or DEFAULT_FILE)


def load_environments(path: Path) -> dict[str, Environment]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvironmentsError(
            f"{path}: cannot read the environments file ({exc.strerror}); name one with "
            f"--environments FILE or {ENV_VARIABLE}"
        ) from None
    return parse_environments(text, str(path))


def main() -> None:
    """`python -m services.ops.environments ENV`: the overlay of ENV (for the Makefile)."""
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m services.ops.environments ENV  (prints its overlay)")
    try:
        environments = load_environments(environments_file(None))
    except EnvironmentsError as exc:
        sys.exit(str(exc))
    environment = environments.get(sys.argv[1])
    if environment is None:
        sys.exit(f"unknown environment {sys.argv[1]!r}; known: {', '.join(sorted(environments))}")
    if environment.overlay is None:
        sys.exit(f"environment {environment.name!r} names no overlay")
    print(environment.overlay)


if __name__ == "__main__":
    main()
