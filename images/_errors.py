"""Errors of the image builder: one root, data as attributes."""

from __future__ import annotations


class ImageError(Exception):
    """Root of every error raised by :mod:`images`."""


class EngineUnavailable(ImageError):
    """The container engine did not answer."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"the Docker engine does not answer ({detail}); start `dockerd` "
            "or point DOCKER_HOST at a running engine"
        )


class ImageMissing(ImageError):
    """A configured image does not exist; the message is the command that makes it."""

    def __init__(self, image: str, command: str) -> None:
        self.image = image
        self.command = command
        super().__init__(f"image {image!r} does not exist; build it with: {command}")


class BootstrapError(ImageError):
    """Making the base image failed."""

    def __init__(self, message: str, *, log_tail: tuple[str, ...] = ()) -> None:
        self.log_tail = log_tail
        text = message if not log_tail else message + "\n" + "\n".join(log_tail)
        super().__init__(text)


class DebootstrapMissing(BootstrapError):
    def __init__(self) -> None:
        super().__init__("debootstrap is not installed; install it with `apt-get install debootstrap`")


class BuildFailed(ImageError):
    """The engine failed to build an image; carries the last lines of the build log."""

    def __init__(self, message: str, *, log_tail: tuple[str, ...] = ()) -> None:
        self.log_tail = log_tail
        text = message if not log_tail else message + "\n--- last build log lines ---\n" + "\n".join(log_tail)
        super().__init__(text)


class UnknownVariant(ImageError):
    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown image variant {name!r}; known variants: {', '.join(known) or 'none'}")


class VariantUnavailable(ImageError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"image variant {name!r} is not available yet: {reason}")


class BaseImageUnsuitable(ImageError):
    """The base image lacks what the runtime image needs (python3 >= 3.11, glibc)."""

    def __init__(self, image: str, reason: str) -> None:
        self.image = image
        self.reason = reason
        super().__init__(f"base image {image!r} cannot carry the corral runtime: {reason}")
