"""`corral skills`: the agent skills a session's kernels import (plugin ``agent_skills``)."""

from __future__ import annotations

import click


@click.group()
def skills() -> None:
    """The corral_skills helpers agents call from IPython cells."""


@skills.command("doc")
def skills_doc() -> None:
    """Print every skill's signature and docstring: the text an agent's prompt includes."""
    from corral_skills import documentation

    click.echo(documentation(), nl=False)
