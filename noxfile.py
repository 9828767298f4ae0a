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
    """Benchmarks; figures and method in docs/performance.md.

    ``nox -s bench -- 100000`` sets the end-to-end size (default 1000 and 10000).
    """
    session.install("-e", ".")
    sizes = session.posargs or ["1000", "10000"]
    for n in sizes:
        # One engine process, then two `ntd run` worker processes on the same database.
        session.run("ntd", "bench", "e2e", "--urls", n, "--json")
        session.run("ntd", "bench", "e2e", "--urls", n, "--processes", "2", "--json")
    session.run("ntd", "bench", "intake", "--urls", "100000")
    session.run("ntd", "bench", "match", "--entries", "1000000", "--json")
    session.run("ntd", "bench", "hash", "--json")
    session.run("ntd", "bench", "resolve", "--json")
    session.run("ntd", "bench", "route", "--json")
    session.run("ntd", "bench", "notify", "--notices", "2000", "--json")
    session.run("ntd", "bench", "recheck", "--cases", "10000", "--json")


@nox.session
def demo(session: nox.Session) -> None:
    """The offline demo."""
    session.install("-e", ".")
    session.run("ntd", "demo")
