"""nox sessions: tests, lint (ruff), typecheck (mypy), bench, demo."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (loopback only)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the code base."""
    session.install("ruff")
    session.run("ruff", "check", "engine", "plugins", "tests")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over engine and plugins."""
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (figures go in docs/performance.md)."""
    session.install("-e", ".")
    session.run("ntd", "bench", "intake", "--urls", "100000")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demo."""
    session.install("-e", ".")
    session.run("ntd", "demo")
