"""Where sandboxes find the vscode plugin's code-server (public names of ``executor._code_server``)."""

from ._code_server import IMAGE_ROOT, INSTALL_HINT, ROOT_ENV, find_install, read_stamp

__all__ = ["IMAGE_ROOT", "INSTALL_HINT", "ROOT_ENV", "find_install", "read_stamp"]
