"""The runtime image's Dockerfile (template + fragments + variants) and its content-hash tag."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
import re

import msgspec

from ._errors import ImageError, UnknownVariant, VariantUnavailable

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE = PACKAGE_DIR / "runtime.Dockerfile.tmpl"
FRAGMENTS = PACKAGE_DIR / "fragments"
VARIANTS = PACKAGE_DIR / "variants"
RUNTIME_REPOSITORY = "corral-runtime"
EXECUTOR_SOURCES = ("protocol", "executor")
"""What the executor runs, relative to the source root; their contents are part of the tag."""

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    text: str
    available: bool
    reason: str = ""


def known_variants(directory: Path = VARIANTS) -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".Dockerfile.tmpl") for p in directory.glob("*.Dockerfile.tmpl")))


def load_variant(name: str, directory: Path = VARIANTS) -> Variant:
    """A variant is a Dockerfile fragment file; a ``# status: not-available <reason>`` header rejects it."""
    path = directory / f"{name}.Dockerfile.tmpl"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or not path.is_file():
        raise UnknownVariant(name, known_variants(directory))
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("# status:"):
            status, _, reason = line.removeprefix("# status:").strip().partition(" ")
            if status == "not-available":
                return Variant(name=name, text=text, available=False, reason=reason.strip() or "no reason given")
    return Variant(name=name, text=text, available=True)


def resolve_variants(names: tuple[str, ...] | list[str]) -> tuple[Variant, ...]:
    """Load the named variants in order (duplicates dropped); reject unknown and unavailable ones."""
    out: list[Variant] = []
    for name in dict.fromkeys(names):
        variant = load_variant(name)
        if not variant.available:
            raise VariantUnavailable(name, variant.reason)
        out.append(variant)
    return tuple(out)


def render(template: str, values: dict[str, str]) -> str:
    """Replace ``{{ name }}`` placeholders; an unknown placeholder is an error, not an empty string."""

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ImageError(f"Dockerfile template has an unknown placeholder {{{{ {key} }}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)


def render_dockerfile(*, base: str, pip_wheel: str, tini: str, variants: tuple[Variant, ...], ca_certs: bool) -> str:
    """The runtime Dockerfile: base + optional CA section + executor venv + user + variant sections."""
    entrypoint = f'ENTRYPOINT ["{tini}", "--"]' if tini else "# no tini in the base image: run with the engine's init (HostConfig.Init)"
    values = {
        "base": base,
        "pip_wheel": pip_wheel,
        "ca_certs": (FRAGMENTS / "ca-certs.Dockerfile.tmpl").read_text().rstrip() if ca_certs else "",
        "variants": "\n".join(v.text.rstrip() for v in variants),
        "entrypoint": entrypoint,
    }
    return render(TEMPLATE.read_text(), values)


def executor_source_digest(root: Path, sources: tuple[str, ...] = EXECUTOR_SOURCES) -> str:
    """sha256 over the relative paths and contents of every file the executor is made of."""
    h = hashlib.sha256()
    for source in sources:
        base = root / source
        if not base.is_dir():
            raise ImageError(f"executor source {base} does not exist")
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            data = path.read_bytes()
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def corral_version() -> str:
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class TagInputs(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a runtime image is made of; its hash names the image."""

    corral_version: str
    base_image_id: str
    executor_digest: str
    wheels: tuple[tuple[str, str], ...]
    """(file name, sha256) of the third-party wheels installed (msgspec, and the pip that installs)."""
    dockerfile: str
    variants: tuple[str, ...]
    uid: int
    gid: int
    ca_certs: tuple[str, ...]
    """sha256 of each extra CA certificate, in order."""


def runtime_tag(inputs: TagInputs) -> str:
    """``corral-runtime:<version>-<12 hex of sha256 over the inputs>``."""
    digest = hashlib.sha256(msgspec.json.encode(inputs)).hexdigest()[:12]
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", inputs.corral_version)
    return f"{RUNTIME_REPOSITORY}:{version}-{digest}"
