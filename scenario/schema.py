"""The scenario file's schema: what each key means and which values it takes (pydantic models).

Structure and types only; names checked against the registries are `scenario.checks`' job, and turning a
scenario into cases `scenario.expand`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    WrapSerializer,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)

from backends.op_profile import DEFAULT_PROFILE_RUNS
from model_zoo.requests import PRECISIONS, parse_compression
from scenario.defaults import (
    AB_DEFAULTS,
    MAX_THREADS,
    MEASURE_DEFAULTS,
    RACE_DEFAULTS,
    ROUND_SECONDS_MAX,
    SLICE_MS_MAX,
    parse_share,
)

Precision = Literal[PRECISIONS]  # type: ignore[valid-type]  # the zoo's list, the one source
Mode = Literal["latency", "throughput", "concurrent"]
MAX_TIMEOUT_S = 24 * 3600  # one case's worker: a longer limit is a typo (seconds meant as milliseconds)


def _canonical_compression(value: Any) -> str:
    """`none`, `{prune: 0.75}` or `{prune: "2:4"}` → the zoo's canonical text ("none", "prune:0.75", "prune:2:4")."""
    if isinstance(value, dict):
        if set(value) != {"prune"}:
            raise ValueError(f"a compression is 'none' or {{prune: F}} / {{prune: \"2:4\"}}, not {value!r}")
        target = value["prune"]
        if isinstance(target, bool) or not isinstance(target, int | float | str):
            raise ValueError(f"prune takes a fraction 0 < F < 1 or a pattern like \"2:4\", not {target!r}")
        value = f"prune:{target}"
    if not isinstance(value, str):
        raise ValueError(f"a compression is 'none' or {{prune: F}} / {{prune: \"2:4\"}}, not {value!r}")
    parsed = parse_compression(value)  # ValueError with the expected forms
    return "none" if parsed is None else parsed.canonical


Compression = Annotated[str, BeforeValidator(_canonical_compression)]


class CalibrationSpec(BaseModel):
    """Where int8 (full integer) quantization takes its activation ranges from."""
    model_config = ConfigDict(extra="forbid")

    samples: int = Field(200, ge=1)
    source: str = Field("dataset", description="dataset | random | a .npz file (relative to the scenario)")

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in ("dataset", "random") and not value.endswith(".npz"):
            raise ValueError(f"source is 'dataset', 'random' or a path to a .npz file, not {value!r}")
        return value


class AccuracySpec(BaseModel):
    """Accuracy budgets; a case that misses one fails, with the numbers. Unset budgets are reported only."""

    model_config = ConfigDict(extra="forbid")

    max_top1_drop: float | None = Field(None, ge=0, le=1, description="reference top-1 minus this case's")
    min_cosine: float | None = Field(None, ge=-1, le=1)
    atol: float | None = Field(None, ge=0)
    rtol: float | None = Field(None, ge=0)


class MeasureSpec(BaseModel):
    """How a case is measured; defaults in scenario.defaults (benchmark_model's: 50 runs, 1 s of steady state)."""

    model_config = ConfigDict(extra="forbid")

    warmup_runs: int = Field(MEASURE_DEFAULTS["warmup_runs"], ge=0)
    warmup_seconds: float = Field(MEASURE_DEFAULTS["warmup_seconds"], ge=0)
    min_runs: int = Field(MEASURE_DEFAULTS["min_runs"], ge=1)
    min_seconds: float = Field(MEASURE_DEFAULTS["min_seconds"], ge=0)
    max_seconds: float = Field(MEASURE_DEFAULTS["max_seconds"], gt=0)
    timeout_s: float = Field(MEASURE_DEFAULTS["timeout_s"], gt=0, le=MAX_TIMEOUT_S,
                             description="wall-clock limit of the whole worker (load + measure), at most 24 h")
    memory_limit_mb: int | None = Field(None, gt=0, description="kill the worker when its RSS passes this")
    streams: int = Field(MEASURE_DEFAULTS["streams"], ge=1, description="parallel streams in concurrent mode")
    seed: int = MEASURE_DEFAULTS["seed"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _max_covers_min(self) -> MeasureSpec:
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) is below min_seconds ({self.min_seconds})")
        return self


# A partial MeasureSpec for per-model overrides: the same fields, each optional. Their bounds are checked once
# merged with the scenario's settings (`Scenario.measure_for`), where cross-field checks can run too.
MeasureOverride = create_model(
    "MeasureOverride",
    __config__=ConfigDict(extra="forbid"),
    **{name: (info.annotation | None, None) for name, info in MeasureSpec.model_fields.items()},  # type: ignore[call-overload]
)


DataKind = Literal["images", "documents", "noise"]
MODEL_DATA = ("auto", "images", "documents", "noise")


class InputEntry(BaseModel):
    """One input of a user's model, described by name (see model_zoo.inputs): every key optional."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int] | None = Field(None, description="per-sample shape, without the batch axis")
    batch_axis: int | Literal["auto"] | None = Field("auto", description="where the batch axis is; none: not batched")
    dtype: str | None = None
    range: tuple[float, float] | None = Field(None, description="[low, high) of generated values")
    value: Any = Field(None, description="a fixed value (a number or nested list), never batched")
    data: DataKind | None = Field(None, description="what fills the input: images, documents or noise (default: "
                                                    "the model's data)")
    mean: list[float] | None = Field(None, description="pictures: subtracted (per channel) after mapping to range")
    std: list[float] | None = Field(None, description="pictures: divided by (per channel) after the mean")
    channels: Literal["rgb", "bgr"] | None = Field(None, description="pictures: the channel order (default rgb)")

    @field_validator("batch_axis", mode="before")
    @classmethod
    def _none_spelled_out(cls, value: Any) -> Any:
        """`batch_axis: none` reads as the word in YAML; it means YAML's null here."""
        return None if isinstance(value, str) and value.lower() == "none" else value

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(d < 1 for d in value):
            raise ValueError("a shape is a list of positive integers ([] for a scalar)")
        return value

    @field_validator("batch_axis")
    @classmethod
    def _axis(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("batch_axis counts from 0 (or is none for an input that is not batched)")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                return np.dtype(value).name
            except TypeError:
                raise ValueError(f"unknown dtype {value!r} (e.g. float32, int64)") from None
        return value

    @model_validator(mode="after")
    def _value_alone(self) -> InputEntry:
        if self.value is not None:
            if self.range is not None or self.shape is not None or self.batch_axis not in ("auto", None) \
                    or self.data is not None:
                raise ValueError("a fixed value takes no shape, range, batch_axis or data (it is used as is, not "
                                 "batched)")
            try:
                np.asarray(self.value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"value must be a number or a nested list of numbers, not {self.value!r}") from None
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range [{self.range[0]}, {self.range[1]}) is empty")
        return self

    def to_description(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None or k == "batch_axis"
                if not (k == "batch_axis" and v == "auto")}


class OutputEntry(BaseModel):
    """One output of a model, described by name: whether it holds class scores (top-1 agreement and the
    near-uniform check apply); unset, an output holding a probability per class (a softmax) is taken for one."""

    model_config = ConfigDict(extra="forbid")

    classes: bool | None = Field(None, description="true: class scores (logits or probabilities); false: not")


class ModelEntry(BaseModel):
    """A zoo model by ``name`` (with options) or a user's file by ``path``, plus per-model overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    path: str | None = None
    input_shape: list[int] | None = None
    inputs: dict[str, InputEntry] | None = Field(None, description="a user's model: its inputs by name")
    outputs: dict[str, OutputEntry] | None = Field(None, description="the model's outputs by name")
    data: str | None = Field(
        None, description="what fills the inputs for timing, fidelity and calibration: auto (a user's file: pictures "
                          "for picture-shaped inputs, noise for the rest), images, documents, noise, or a .npz of "
                          "your own inputs (relative to the scenario)")
    label: str | None = None
    precisions: list[Precision] | None = None
    batch_sizes: list[int] | None = None
    compression: list[Compression] | None = Field(None, min_length=1)
    calibration: CalibrationSpec | None = None
    accuracy: AccuracySpec | None = Field(None, description="replaces the scenario's budgets key by key")
    measure: MeasureOverride | None = None
    race: RaceField | None = Field(None, description="this model's race settings over the scenario's, or false")
    profile: ProfileField | None = Field(None, description="profile this model's cases (true, false or {runs: N})")
    budgets: list[BudgetSpec] | None = Field(None, description="performance budgets of this model's cases, beside "
                                                               "the scenario's")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("data")
    @classmethod
    def _data(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_DATA and not value.lower().endswith(".npz"):
            raise ValueError(f"data is one of {', '.join(MODEL_DATA)} or a .npz file of inputs, not {value!r}")
        return value

    @model_validator(mode="after")
    def _name_or_path(self) -> ModelEntry:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a zoo model) or 'path' (your model file)")
        if self.inputs is not None and self.name is not None:
            raise ValueError("inputs describes a model file's inputs; a zoo model takes input_shape")
        return self

    @field_validator("input_shape", "batch_sizes")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(v < 1 for v in value)):
            raise ValueError("must be a non-empty list of positive integers")
        return value


class BackendEntry(BaseModel):
    """A backend by name; ``threads`` and backend-specific options (checked against the backend) alongside."""

    model_config = ConfigDict(extra="allow")

    name: str
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BudgetSelect(BaseModel):
    """Which cases a budget holds for; a key left out matches every case. ``backend`` is a label or a name."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="a model's label (scenario-level budgets only)")
    backend: str | None = None
    precision: Precision | None = None
    compression: Compression | None = None
    batch_size: int | None = Field(None, ge=1)
    mode: Mode | None = None


class AgainstSpec(BaseModel):
    """The configuration a relative budget compares with, in the case's own group (model, batch size, mode)."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(description="a backend of this scenario, by label or name")
    precision: Precision = "fp32"
    compression: Compression = "none"


RELATIVE_LIMITS = ("min_speedup", "max_slowdown")
ABSOLUTE_LIMITS = ("max_p50_ms", "max_p99_ms", "min_throughput_ips", "max_peak_rss_mb", "max_model_size_mb")


class BudgetSpec(BaseModel):
    """A performance budget: the selected cases pass or fail on it (results.budgets judges it). Relative limits
    (``min_speedup``, ``max_slowdown``) are judged on the same-sitting race's paired ratio and its interval, so they
    hold on any machine; absolute ones on the case's own figures, on the machine named by ``machine`` (its
    machine_id or the ACCELBENCH_MACHINE label) where one is named."""

    model_config = ConfigDict(extra="forbid")

    select: BudgetSelect = Field(default_factory=BudgetSelect)
    min_speedup: float | None = Field(None, gt=0, description="the against case's latency over this one's, at least")
    max_slowdown: float | None = Field(None, gt=0, description="this case's latency over the against case's, at most")
    against: AgainstSpec | None = Field(None, description="default: the group's baseline")
    max_p50_ms: float | None = Field(None, gt=0)
    max_p99_ms: float | None = Field(None, gt=0)
    min_throughput_ips: float | None = Field(None, gt=0)
    max_peak_rss_mb: float | None = Field(None, gt=0)
    max_model_size_mb: float | None = Field(None, gt=0)
    machine: str | None = Field(None, min_length=1, description="absolute limits hold on this machine only")
    cannot_tell: Literal["skip", "fail"] = Field(
        "skip", description="what an undecided relative budget does to its pytest item (reported either way)")

    @model_validator(mode="after")
    def _limits(self) -> BudgetSpec:
        given = [name for name in (*RELATIVE_LIMITS, *ABSOLUTE_LIMITS) if getattr(self, name) is not None]
        if not given:
            raise ValueError(f"a budget sets at least one limit: {', '.join((*RELATIVE_LIMITS, *ABSOLUTE_LIMITS))}")
        if self.against is not None and not any(name in given for name in RELATIVE_LIMITS):
            raise ValueError("against names what min_speedup or max_slowdown compare with; this budget sets neither")
        if self.machine is not None and not any(name in given for name in ABSOLUTE_LIMITS):
            raise ValueError("machine ties absolute limits to a machine; relative ones hold on any machine")
        return self

    def limits(self) -> dict[str, float]:
        """The limits set, by name, in the order the results list them."""
        return {name: value for name in (*RELATIVE_LIMITS, *ABSOLUTE_LIMITS)
                if (value := getattr(self, name)) is not None}


class BaselineSpec(BaseModel):
    """The case the report compares every other case with (same model, batch size and mode, same run):
    a speed-up only means something against one named configuration measured in the same sitting."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(description="a backend of this scenario, by label or name")
    precision: Precision = "fp32"


def _share(value: Any) -> Any:
    """ "5%", 5 or 0.05: one reading for scenario files and the command line (scenario.defaults.parse_share)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value  # pydantic names what it is not
    return parse_share(value)


Share = Annotated[float, BeforeValidator(_share), Field(gt=0, lt=1)]


class AbSpec(BaseModel):
    """Compare every case on two sides in one sitting (harness.sitting): `accelbench ab` and the pytest front door
    run it, and a case whose verdict is "slower" fails. A side is a mapping of ``python`` (an interpreter, e.g.
    another virtualenv's), ``model`` (a model file in place of the case's), ``options`` and other backend options;
    relative paths are relative to the scenario file (scenario.sides)."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict)
    new: dict[str, Any] = Field(default_factory=dict)
    method: Literal["lockstep", "duet"] = AB_DEFAULTS["method"]  # type: ignore[assignment]
    threshold: Share = AB_DEFAULTS["threshold"]  # type: ignore[assignment]
    max_seconds: float = Field(AB_DEFAULTS["max_seconds"], gt=0, le=MAX_TIMEOUT_S,
                               description="per case, worker start-ups included")
    min_rounds: int = Field(AB_DEFAULTS["min_rounds"], ge=2,
                            description="the exact signed-rank test reaches p < 0.01 from 8 rounds on")
    round_seconds: float = Field(AB_DEFAULTS["round_seconds"], gt=0, le=ROUND_SECONDS_MAX)
    slice_ms: float = Field(AB_DEFAULTS["slice_ms"], gt=0, le=SLICE_MS_MAX)
    fresh: Literal["worker", "session"] = AB_DEFAULTS["fresh"]  # type: ignore[assignment]
    seed: int = Field(AB_DEFAULTS["seed"], ge=0)


class RaceSpec(BaseModel):
    """Race each (model, batch size, mode) group's passing configurations in one sitting after the run's cases
    (harness.race): every speed-up then comes from paired rounds, and a winner is named only when it won.
    ``race: false`` (or ``off``) leaves the speed-ups sequential."""

    model_config = ConfigDict(extra="forbid")

    threshold: Share = RACE_DEFAULTS["threshold"]  # type: ignore[assignment]
    alpha: float = Field(RACE_DEFAULTS["alpha"], gt=0, lt=1,
                         description="family-wise error of a race, over all its looks and comparisons")
    looks: int = Field(RACE_DEFAULTS["looks"], ge=1, le=20, description="times the race may be judged")
    max_seconds: float = Field(RACE_DEFAULTS["max_seconds"], gt=0, le=MAX_TIMEOUT_S,
                               description="per group, worker start-ups included (not measure.max_seconds)")
    round_seconds: float = Field(RACE_DEFAULTS["round_seconds"], gt=0, le=ROUND_SECONDS_MAX)
    slice_ms: float = Field(RACE_DEFAULTS["slice_ms"], gt=0, le=SLICE_MS_MAX)
    fresh: Literal["worker", "session"] = RACE_DEFAULTS["fresh"]  # type: ignore[assignment]
    gross_factor: float = Field(RACE_DEFAULTS["gross_factor"], gt=1, le=1000,
                                description="sequentially this many times slower than the fastest: not raced")
    memory_mb: int | None = Field(None, gt=0, description="memory the race's sessions may hold at once "
                                                          "(default: 80 % of what is available)")
    seed: int = Field(RACE_DEFAULTS["seed"], ge=0)

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """`race: true` is the defaults; false/off is handled by the field that holds a race (race_switch)."""
        return {} if value is True else value


def race_switch(value: Any) -> Any:
    """`race: off` / `no` / `false` (YAML 1.1 reads off and no as false already; a quoted one is a string) turn
    races off: False; anything else is a race block."""
    if isinstance(value, str) and value.strip().lower() in ("off", "false", "no"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("on", "true", "yes"):
        return True
    return value


def _block_or_off(spec: type[BaseModel], expected: str) -> Callable[[Any, ValidatorFunctionWrapHandler], Any]:
    """The validator of a key that holds a block or switches it (race:, profile:): False for a switch that turns it
    off, else the value validated as ``spec`` by itself. Not a union of the two: pydantic reports a union's every
    member (a bad key came out as two errors, neither with a "did you mean"); here the block's own errors come
    back at their keys. ``expected`` says what the key takes, for a value of another kind."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        value = race_switch(value)
        if value is False:
            return False
        if value is not True and not isinstance(value, dict | spec):
            raise ValueError(f"{expected}, not {value!r}")
        return handler(value)

    return validate


class ProfileSpec(BaseModel):
    """A per-operator profile of each case, in a pass of its own after the case's timing (harness.worker):
    ``profile: true`` takes the defaults, ``profile: {runs: 50}`` profiles more runs."""

    model_config = ConfigDict(extra="forbid")

    runs: int = Field(DEFAULT_PROFILE_RUNS, ge=1, le=10_000, description="profiled runs, after a short warm-up")

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return {} if value is True else value



def _switch_or_block(value: Any, handler: SerializerFunctionWrapHandler) -> Any:
    """A switched-off block serializes as false (what the YAML said), a block as its fields."""
    return False if value is False else handler(value)


if TYPE_CHECKING:
    RaceField = RaceSpec | Literal[False]
    ProfileField = ProfileSpec | Literal[False]
else:
    RaceField = Annotated[RaceSpec, WrapValidator(_block_or_off(
        RaceSpec, "a race block ({threshold: 5%, max_seconds: 45}), true, or false/off to turn races off")),
        WrapSerializer(_switch_or_block)]
    ProfileField = Annotated[ProfileSpec, WrapValidator(_block_or_off(
        ProfileSpec, "true, false or a profile block ({runs: 20})")), WrapSerializer(_switch_or_block)]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    backends: list[BackendEntry] = Field(min_length=1)
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32"], min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    mode: list[Mode] = Field(default_factory=lambda: ["latency"], min_length=1)
    compression: list[Compression] = Field(default_factory=lambda: ["none"], min_length=1)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    accuracy: AccuracySpec = Field(default_factory=AccuracySpec)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    baseline: BaselineSpec | None = None
    ab: AbSpec | None = None
    race: RaceField = Field(default_factory=RaceSpec)
    profile: ProfileField = Field(False, description="a per-operator profile of every case after its timing")
    budgets: list[BudgetSpec] = Field(default_factory=list, description="performance budgets, each for the cases "
                                                                        "its select: matches")

    @field_validator("mode", mode="before")
    @classmethod
    def _one_mode(cls, value: Any) -> Any:
        """`mode: latency` is the common spelling of a one-element list."""
        return [value] if isinstance(value, str) else value

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("batch sizes must be positive integers")
        return value

    @property
    def modes(self) -> list[Mode]:
        return list(self.mode)

    def measure_for(self, model: ModelEntry) -> MeasureSpec:
        """The scenario's settings with the model's overrides, validated as a whole (e.g. max ≥ min)."""
        if model.measure is None:
            return self.measure
        return MeasureSpec.model_validate({**self.measure.model_dump(), **model.measure.model_dump(exclude_none=True)})


    def race_for(self, model: ModelEntry) -> dict[str, Any] | None:
        """The model's race settings (the scenario's with the model's over them, key by key), None: not raced."""
        if model.race is False or (self.race is False and model.race is None):
            return None
        given = {} if model.race is None else model.race.model_dump(exclude_unset=True)
        base = {} if self.race is False else self.race.model_dump()
        return RaceSpec.model_validate({**base, **given}).model_dump()

    def profile_for(self, model: ModelEntry) -> dict[str, Any] | None:
        """The model's profiling settings ({"runs": N}), None: not profiled. The model's own key wins."""
        chosen = self.profile if model.profile is None else model.profile
        return None if chosen is False else chosen.model_dump()


KEYS_AT = {
    (): set(Scenario.model_fields),
    ("models",): set(ModelEntry.model_fields),
    ("measure",): set(MeasureSpec.model_fields),
    ("models", "measure"): set(MeasureSpec.model_fields),
    ("calibration",): set(CalibrationSpec.model_fields),
    ("models", "calibration"): set(CalibrationSpec.model_fields),
    ("accuracy",): set(AccuracySpec.model_fields),
    ("models", "accuracy"): set(AccuracySpec.model_fields),
    ("models", "inputs"): set(InputEntry.model_fields),
    ("models", "outputs"): set(OutputEntry.model_fields),
    ("baseline",): set(BaselineSpec.model_fields),
    ("ab",): set(AbSpec.model_fields),
    ("race",): set(RaceSpec.model_fields),
    ("models", "race"): set(RaceSpec.model_fields),
    ("profile",): set(ProfileSpec.model_fields),
    ("models", "profile"): set(ProfileSpec.model_fields),
    ("budgets",): set(BudgetSpec.model_fields),
    ("models", "budgets"): set(BudgetSpec.model_fields),
    ("budgets", "select"): set(BudgetSelect.model_fields),
    ("models", "budgets", "select"): set(BudgetSelect.model_fields),
    ("budgets", "against"): set(AgainstSpec.model_fields),
    ("models", "budgets", "against"): set(AgainstSpec.model_fields),
}


