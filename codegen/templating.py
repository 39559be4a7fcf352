"""The one Jinja environment that renders every template in ``cartinv/templates``: strict (an undefined name is an
error, not empty text), layout-preserving, with the escaping filters of ``escape.py``."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import jinja2

from cartinv.codegen import escape

__all__ = ["environment"]


def _load_template(name: str) -> str | None:
    """A shipped template's text, or None (Jinja's TemplateNotFound) for a name that is not one."""
    path = resources.files("cartinv.templates").joinpath(name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(escape.FILTERS)
    return env
