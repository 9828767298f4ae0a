"""Every error ntd raises on purpose.

The tree (modelled on httpx's ``_exceptions``)::

    NtdError                      base of everything below; ``case_id`` when one is concerned
    ├── ConfigError               ntd.toml / environment is wrong (names the key)
    ├── InputError                a submitted URL or file is unusable (names file/line/field)
    ├── PluginError               a plugin failed to load or declares a bad hook (names the plugin)
    ├── StorageError              the database refused or is on an unknown schema version
    └── StageError                a pipeline stage could not do its work for one case
        ├── FetchError            SSRF refusal, cap exceeded, timeout, network failure
        ├── HashlistError         a hash-list file is malformed
        ├── ResolutionError       DNS / RDAP failure
        ├── RoutingError          no policy could decide
        ├── DeliveryError         SMTP / API delivery failed (``permanent`` says whether to retry)
        └── WorkerError           a CPU-pool task was stopped (time or memory budget) or its
                                  worker died; ``reason`` worker_timeout / _memory / _crashed

Dependency errors are mapped at the boundary and re-raised ``from exc`` so the context survives.
The CLI maps ``InputError`` and ``ConfigError`` to exit code 2, every other ``NtdError`` to 1.
"""

from __future__ import annotations


class NtdError(Exception):
    """Base class of all ntd errors."""

    def __init__(self, message: str, *, case_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.case_id = case_id

    def __str__(self) -> str:
        if self.case_id:
            return f"{self.message} (case {self.case_id})"
        return self.message


class ConfigError(NtdError):
    """Configuration is invalid; the message names the key at fault."""


class InputError(NtdError):
    """User input is invalid; the message names the file, line or field at fault."""


class PluginError(NtdError):
    """A plugin failed to load or registered an invalid hook; the message names the plugin."""


class StorageError(NtdError):
    """The store failed or its schema is not one this version understands."""


class StageError(NtdError):
    """A stage failed for one case. ``reason`` is a short machine-friendly code."""

    def __init__(
        self, message: str, *, reason: str = "error", case_id: str | None = None
    ) -> None:
        super().__init__(message, case_id=case_id)
        self.reason = reason


class FetchError(StageError):
    """Fetching a URL was refused (SSRF policy) or failed (network, caps, timeout)."""


class HashlistError(StageError):
    """A hash list is malformed or unknown."""


class ResolutionError(StageError):
    """Host, network or registrar resolution failed."""


class RoutingError(StageError):
    """No routing decision could be made."""


class DeliveryError(StageError):
    """A notice could not be delivered. ``permanent`` failures are not retried."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        permanent: bool = False,
        case_id: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, case_id=case_id)
        self.permanent = permanent


class WorkerError(StageError):
    """A task in the CPU pool did not finish: its worker was stopped for exceeding the task's
    time budget (``worker_timeout``) or its memory budget (``worker_memory``), or died
    (``worker_crashed``). The worker is restarted; only this task is lost."""
