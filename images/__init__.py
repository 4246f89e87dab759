"""Runtime images for container sandboxes, built locally and offline.

- :func:`bootstrap_base_image` makes ``corral-base:<suite>`` with debootstrap (no registry).
- :func:`ensure_runtime_image` returns ``corral-runtime:<version>-<hash>``, building it only when
  no image with that content hash exists.
- :class:`RuntimeBuilder` is the interface; :class:`DockerRuntimeBuilder` builds with the engine.
"""

from ._base import BaseFacts, probe_base
from ._bootstrap import (
    BASE_PACKAGES,
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    BootstrapConfig,
    base_image_name,
    bootstrap_base_image,
    default_cache_dir,
)
from ._builder import BuildContext, BuilderStatistics, DockerRuntimeBuilder, RuntimeBuilder
from ._code_server import (
    CODE_SERVER_VERSION,
    CodeServerInstallFailed,
    InstallStamp,
    code_server_root,
    install_code_server,
)
from ._code_server import read_stamp as code_server_stamp
from ._dockerfile import (
    EXECUTOR_SOURCES,
    RUNTIME_REPOSITORY,
    TagInputs,
    Variant,
    executor_source_digest,
    known_variants,
    load_variant,
    render_dockerfile,
    resolve_variants,
    runtime_tag,
)
from ._engine import VARIANTS_LABEL, ImageSummary, image_variants, list_corral_images, open_docker
from ._ensure import DEFAULT_BASE, HOST_CA_BUNDLE, build_command, ensure_runtime_image, require_image
from ._errors import (
    BaseImageUnsuitable,
    BootstrapError,
    BuildFailed,
    DebootstrapMissing,
    EngineUnavailable,
    ImageError,
    ImageMissing,
    UnknownVariant,
    VariantUnavailable,
)
from ._progress import Progress, ProgressFn
from ._wheels import installed_closure

__all__ = [name for name in dir() if not name.startswith("_")]
