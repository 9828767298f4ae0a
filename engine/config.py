"""Configuration: ``ntd.toml`` plus environment, validated at start-up against declared schemas.

The engine declares its own sections here; every plugin may declare more through the
``ntd_config_schema`` hook. Unknown sections and keys, wrong types and bad values are errors that
name the key (``[fetch] max_bytes: expected an integer, got 'lots'``). Secrets never live in the
file: options whose name ends in ``_env`` name an environment variable that holds the secret.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

DEFAULT_CONFIG_NAME = "ntd.toml"


@dataclass(frozen=True, kw_only=True)
class Option:
    """One configuration key: its type, default and an optional value check."""

    type: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    check: Callable[[Any], str | None] | None = None  # returns an error message or None

    def validate(self, where: str, value: Any) -> Any:
        """Return ``value`` if it fits, else raise ConfigError naming ``where``."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        # bool is an int in Python; a TOML `true` must not pass as a count.
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(f"{where}: expected {_type_names(types)}, got {value!r}")
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types):
            raise ConfigError(f"{where}: expected {_type_names(types)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{where}: {problem}")
        return value


def _type_names(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def positive(value: Any) -> str | None:
    """Option check: the value must be greater than zero."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    """Option check: the value must be zero or more."""
    return None if value >= 0 else "must be 0 or more"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    """Option check: ``low <= value <= high``."""

    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def header_value(value: Any) -> str | None:
    """Option check: text that may go into an HTTP header (no control characters)."""
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    return None if bad is None else f"must not contain control characters (found {bad!r})"


def port_list(value: Any) -> str | None:
    """Option check: a non-empty list of TCP ports (integers 1-65535)."""
    if not value:
        return "must list at least one port"
    for port in value:
        if isinstance(port, bool) or not isinstance(port, int):
            return f"{port!r} is not a port number (write 80, not \"80\")"
        if not 1 <= port <= 65535:
            return f"{port} is not a port (1-65535)"
    return None


def host_addresses(value: Any) -> str | None:
    """Option check: one IP address, or a non-empty list of them (a static host map entry)."""
    addresses = value if isinstance(value, list) else [value]
    if not addresses:
        return "must name at least one address"
    for address in addresses:
        if not isinstance(address, str):
            return f"{address!r} is not an IP address (write it as a string)"
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return f"{address!r} is not an IP address"
    return None


def one_of(*choices: str) -> Callable[[Any], str | None]:
    """Option check: the value must be one of ``choices``."""

    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


# A section schema maps key -> Option. A section whose schema has the key "*" accepts free-form
# keys validated by that option (used for host maps and per-stage concurrency tables).
Schema = Mapping[str, Mapping[str, Option]]

ENGINE_SCHEMA: dict[str, dict[str, Option]] = {
    "pipeline": {
        "workers": Option(type=int, default=None, check=between(1, 10_000),
                          help="workers per stage (default: 128 fetch, 64 recheck, 32 resolve, "
                               "16 others)"),
        "queue_size": Option(type=int, default=256, check=between(1, 1_000_000),
                             help="bound of each stage's queue"),
        "per_host_limit": Option(type=int, default=4, check=between(1, 1_000),
                                 help="outbound requests in flight per host"),
        "cpu_workers": Option(type=int, default=0, check=between(0, 512),
                              help="process-pool size for CPU-bound work; 0 = number of cores"),
        "cpu_nice": Option(type=int, default=10, check=between(0, 19),
                           help="niceness added to the CPU pool's processes, so hashing yields "
                                "the cores to the event loops (0 = same priority)"),
        "lease_seconds": Option(type=int, default=300, check=positive,
                                help="how long a claimed case stays leased to a worker"),
        "poll_seconds": Option(type=float, default=1.0, check=positive,
                               help="how often idle stages look for new work"),
        "shutdown_grace_seconds": Option(type=float, default=30.0, check=positive,
                                         help="how long in-flight work may finish on SIGTERM"),
    },
    "pipeline.concurrency": {
        "*": Option(type=int, check=between(1, 10_000), help="workers for the named stage"),
    },
    "lab": {
        "allow_private_networks": Option(
            type=bool, default=False,
            help="allow fetching loopback/private addresses: tests and benchmarks only"),
    },
    # Static host map (lab DNS), shared by the fetcher and the resolution stage:
    # "hoster-1.test" = "127.0.0.1" or = ["127.0.0.1", "::1"].
    "resolve.hosts": {
        "*": Option(type=(str, list), check=host_addresses,
                    help="addresses of a host name (labs and tests)"),
    },
    "logging": {
        "level": Option(type=str, default="WARNING",
                        check=one_of("DEBUG", "INFO", "WARNING", "ERROR")),
        "format": Option(type=str, default="text", check=one_of("text", "json")),
        "file": Option(type=str, default=None, help="log file (default: stderr)"),
    },
    "stats": {
        "min_count": Option(type=int, default=5, check=non_negative,
                            help="suppress statistics cells below this count"),
    },
}


@dataclass
class Config:
    """Validated configuration: ``config.section("fetch")["max_bytes"]``."""

    path: Path | None = None
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """The named section with defaults filled in (empty dict if undeclared)."""
        return self.values.get(name, {})

    def get(self, name: str, key: str, default: Any = None) -> Any:
        """One value of a section, or ``default``."""
        return self.values.get(name, {}).get(key, default)


def find_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config file: ``--config``, then ``NTD_CONFIG``, then ``./ntd.toml`` if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NTD_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors name the file and the parser's position."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # tomllib decodes the whole file: the offset is right
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "TOML files must be UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def _flatten_sections(raw: Mapping[str, Any], schema: Schema, prefix: str = "") -> dict[str, Any]:
    """Map nested TOML tables to dotted section names known to the schema."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name in schema:
            plain = {k: v for k, v in value.items()
                     if not (isinstance(v, dict) and f"{name}.{k}" in schema)}
            nested = {k: v for k, v in value.items() if k not in plain}
            out[name] = plain
            out.update(_flatten_sections(nested, schema, prefix=f"{name}."))
        elif isinstance(value, dict) and any(s.startswith(name + ".") for s in schema):
            out.update(_flatten_sections(value, schema, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def validate(raw: Mapping[str, Any], schema: Schema, *, path: Path | None = None) -> Config:
    """Validate raw TOML data against ``schema`` and fill in defaults."""
    where_file = f"{path}: " if path else ""
    flat = _flatten_sections(raw, schema)
    values: dict[str, dict[str, Any]] = {}
    problems: list[str] = []  # every problem at once: one `config check` shows them all
    for section, body in flat.items():
        if section not in schema:
            known = ", ".join(sorted(schema))
            problems.append(f"[{section}]: unknown section (known: {known})")
            continue
        if not isinstance(body, dict):
            problems.append(f"{section}: expected a [table]")
            continue
        options = schema[section]
        checked: dict[str, Any] = {}
        for key, value in body.items():
            option = options.get(key) or options.get("*")
            if option is None:
                known = ", ".join(sorted(options))
                problems.append(f"[{section}] {key}: unknown key (known: {known})")
                continue
            try:
                checked[key] = option.validate(f"[{section}] {key}", value)
            except ConfigError as exc:
                problems.append(exc.message)
        values[section] = checked
    if len(problems) == 1:
        raise ConfigError(where_file + problems[0])
    if problems:
        raise ConfigError(f"{where_file}{len(problems)} problems:\n  " + "\n  ".join(problems))
    for section, options in schema.items():
        sect = values.setdefault(section, {})
        for key, option in options.items():
            if key != "*" and key not in sect:
                sect[key] = option.default
    return Config(path=path, values=values)


def secret_from_env(section: str, key: str, env_name: str | None) -> str | None:
    """Read a secret from the environment variable named by a ``*_env`` option."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"[{section}] {key}: environment variable {env_name} is not set")
    return value
