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
EXECUTOR_SOURCES = ("protocol", "executor", "corral_skills")
"""What runs inside sandboxes (the executor, and the skills its kernels import), relative to the
source root; their contents are part of the tag."""

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    text: str
    available: bool
    reason: str = ""
    wheels: tuple[str, ...] = ()
    """Requirements from PyPI (``# wheels:``), downloaded on the host and installed offline."""
    requires: tuple[str, ...] = ()
    """Variants it needs (``# requires:``); asking for it asks for them."""
    host_files: tuple[str, ...] = ()
    """Host directories it COPYs (``# host-files:``), each made by the provider of that name
    (``images._host_files``) and put into the build context at ``{{ files }}/<name>/``."""
    apt: tuple[str, ...] = ()
    """Distribution packages it needs (``# apt:``), installed over the base's apt sources before the
    executor, in a layer of their own, so a changed executor does not install them again."""


def known_variants(directory: Path = VARIANTS) -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".Dockerfile.tmpl") for p in directory.glob("*.Dockerfile.tmpl")))


def load_variant(name: str, directory: Path = VARIANTS) -> Variant:
    """A variant is a Dockerfile fragment file whose leading comment lines may say
    ``# status: not-available <reason>`` (rejected), ``# wheels: req...`` (PyPI requirements it
    installs), ``# apt: package...`` (Debian packages it installs), ``# requires: variant...``
    (variants it builds on) and ``# host-files: name...`` (directories prepared on the host that it COPYs)."""
    path = directory / f"{name}.Dockerfile.tmpl"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or not path.is_file():
        raise UnknownVariant(name, known_variants(directory))
    text = path.read_text()
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break  # the header is the leading comment block
        key, colon, value = line.removeprefix("#").partition(":")
        if colon and key.strip() in ("status", "wheels", "requires", "apt", "host-files"):
            header[key.strip()] = value.strip()
    status, _, reason = header.get("status", "").partition(" ")
    return Variant(name=name, text=text, available=status != "not-available",
                   reason=reason.strip() or "no reason given" if status == "not-available" else "",
                   wheels=tuple(header.get("wheels", "").split()), requires=tuple(header.get("requires", "").split()),
                   host_files=tuple(header.get("host-files", "").split()),
                   apt=tuple(header.get("apt", "").split()))


def resolve_variants(names: tuple[str, ...] | list[str], directory: Path = VARIANTS) -> tuple[Variant, ...]:
    """The named variants and those they require, each after what it requires and otherwise by
    name, once; unknown and unavailable ones are rejected."""
    out: dict[str, Variant] = {}

    def add(name: str, seen: tuple[str, ...]) -> None:
        if name in out:
            return
        if name in seen:
            raise ImageError(f"image variants require each other in a circle: {' -> '.join((*seen, name))}")
        variant = load_variant(name, directory)
        if not variant.available:
            raise VariantUnavailable(name, variant.reason)
        for needed in sorted(variant.requires):
            add(needed, (*seen, name))
        out[name] = variant

    for name in sorted(set(names)):
        add(name, ())
    return tuple(out.values())


def render(template: str, values: dict[str, str]) -> str:
    """Replace ``{{ name }}`` placeholders; an unknown placeholder is an error, not an empty string."""

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ImageError(f"Dockerfile template has an unknown placeholder {{{{ {key} }}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)


def variant_wheel_dir(name: str) -> str:
    """Where a variant's wheels (and the pip that installs them) sit in the build context."""
    return f"variant-wheels/{name}"


def variant_files_dir(name: str) -> str:
    """Where a variant's host files (``# host-files:``) sit in the build context."""
    return f"variant-files/{name}"


def render_variant(variant: Variant, *, pip_wheel: str) -> str:
    """A variant's fragment with ``{{ pip_wheel }}``, ``{{ wheels }}`` (its context directory),
    ``{{ requirements }}`` (the names from its ``# wheels:`` header) and ``{{ files }}`` (its host
    files' context directory) filled in."""
    names = " ".join(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0] for req in variant.wheels)
    return render(variant.text, {"pip_wheel": pip_wheel, "wheels": variant_wheel_dir(variant.name),
                                 "requirements": names, "files": variant_files_dir(variant.name)})


def render_dockerfile(*, base: str, pip_wheel: str, tini: str, variants: tuple[Variant, ...], ca_certs: bool) -> str:
    """The runtime Dockerfile: base + optional CA section + the variants' apt packages + executor venv +
    user + variant sections."""
    packages = sorted({p for v in variants for p in v.apt})
    entrypoint = f'ENTRYPOINT ["{tini}", "--"]' if tini else "# no tini in the base image: run with the engine's init (HostConfig.Init)"
    values = {
        "base": base,
        "pip_wheel": pip_wheel,
        "ca_certs": (FRAGMENTS / "ca-certs.Dockerfile.tmpl").read_text().rstrip() if ca_certs else "",
        "apt": render((FRAGMENTS / "apt.Dockerfile.tmpl").read_text(), {"packages": " ".join(packages)}).rstrip()
               if packages else "",
        "variants": "\n".join(render_variant(v, pip_wheel=pip_wheel).rstrip() for v in variants),
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


class TagInputs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything a runtime image is made of; its hash names the image (fields with defaults are
    left out while at their default, so adding one keeps every existing tag)."""

    corral_version: str
    base_image_id: str
    executor_digest: str
    wheels: tuple[tuple[str, str], ...]
    """(file name, sha256) of the third-party wheels installed (msgspec, the pip that installs, and
    every wheel of the variants)."""
    dockerfile: str
    variants: tuple[str, ...]
    uid: int
    gid: int
    ca_certs: tuple[str, ...]
    """sha256 of each extra CA certificate, in order."""
    host_files: tuple[tuple[str, str], ...] = ()
    """(name, digest) of each variant's host files (e.g. code-server's version and its node's)."""


def runtime_tag(inputs: TagInputs) -> str:
    """``corral-runtime:<version>-<12 hex of sha256 over the inputs>``."""
    digest = hashlib.sha256(msgspec.json.encode(inputs)).hexdigest()[:12]
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", inputs.corral_version)
    return f"{RUNTIME_REPOSITORY}:{version}-{digest}"
