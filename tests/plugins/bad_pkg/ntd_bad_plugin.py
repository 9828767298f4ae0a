"""A plugin with a misspelt hook (fixture): loading must fail naming it."""

from __future__ import annotations

from engine import hookimpl


@hookimpl
def ntd_fecth(case, ctx):
    return None
