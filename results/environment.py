"""env.json, typed where it is read: a run folder from another version, another tool or a careless edit must fail
as one line naming the file and the field, not as an AttributeError deep in the report.

Lenient like Record.read: fields this version does not know are kept as they are (a newer accelbench may add
some); the fields the report, the history and compare read must have the kind they expect.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class GpuDevice(_Lenient):
    name: str | None = None
    memory_mb: float | None = None


class Gpu(_Lenient):
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    devices: list[GpuDevice] = []


class Machine(_Lenient):
    cpu_model: str | None = None
    cpu_logical: int | None = None
    cpu_physical: int | None = None
    memory_gb: float | None = None
    os: str | None = None
    arch: str | None = None
    python: str | None = None
    gpu: Gpu | None = None


class Git(_Lenient):
    id: str | None = None
    branch: str | None = None
    time: str | None = None
    dirty: bool | None = None


class Environment(_Lenient):
    env_id: str | None = None
    machine_id: str | None = None
    collected_at: str | None = None
    hostname: str | None = None
    machine: Machine | None = None
    libraries: dict[str, str | None] | None = None
    git: Git | None = None


class EnvFileError(ValueError):
    """env.json holds a field of the wrong kind; the message names the field."""


def check_environment(data: dict[str, Any]) -> None:
    """Raise EnvFileError naming the first field of env.json that is not of the kind accelbench reads."""
    try:
        Environment.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        raise EnvFileError(f"{where}: {problem['msg']}") from None
