"""``python -m cli``: the corral command."""

from .main import main

main()
