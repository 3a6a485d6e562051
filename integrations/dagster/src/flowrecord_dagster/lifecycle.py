"""Promotion gates and retraining policies in Dagster's own terms.

flowrecord's :class:`~flowrecord.lifecycle.PromotionGate` and
:class:`~flowrecord.lifecycle.RetrainPolicy` decide; this module puts them where
a Dagster user looks for them:

- **the gate is a blocking asset check** on the asset that registers the
  candidate model version: :func:`promotion_gate_check`. The check applies the
  gate (``champion`` moves only when every criterion passed) and reports the
  decision as an ``AssetCheckResult`` with severity ERROR, every reason and the
  evidence as metadata. A refusal fails the check, and Dagster's blocking-check
  semantics keep every downstream asset of the run (the deploy) from
  materialising: the check's step fails with ``DagsterAssetCheckFailedError``,
  the steps that depend on the asset are not executed, and the run ends
  failed. The candidate version comes from the asset's materialization metadata
  (:data:`MODEL_VERSION_KEY`, written with :func:`model_version_metadata`). In a
  graph job the same gate is :func:`promotion_gate_op`, an op whose
  ``promoted``/``refused`` outputs branch the job.
- **the retraining policy is a schedule and a sensor**: :func:`retrain_schedule`
  compiles the policy's ``cron`` into a ``ScheduleDefinition`` (UTC), and
  :func:`retrain_sensor` evaluates the policy against the record on each tick
  and requests a run when new data, drift or metric decay call for one.

:func:`asset_datasets` names the recorded versions of upstream assets, for
:func:`flowrecord.lifecycle.register_model_version`.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from flowrecord_dagster._catalog import key_name
from flowrecord_dagster._metadata import FINGERPRINT_KEY, RUN_ID_KEY, TASK_ID_KEY, _safe

if TYPE_CHECKING:
    from flowrecord.lifecycle import GateDecision, ModelVersion, PromotionGate, RetrainPolicy

__all__ = [
    "GATE_CHECK_NAME",
    "MODEL_KEY",
    "MODEL_VERSION_KEY",
    "RETRAIN_POLICY_TAG",
    "RETRAIN_REASONS_TAG",
    "RETRAIN_TRIGGERS_TAG",
    "asset_datasets",
    "model_version_metadata",
    "promotion_gate_check",
    "promotion_gate_op",
    "retrain_run_request",
    "retrain_schedule",
    "retrain_sensor",
]

log = logging.getLogger("flowrecord")

MODEL_KEY = "flowrecord/model"
"""Materialization metadata key: the registered model an asset produced a version of."""
MODEL_VERSION_KEY = "flowrecord/model_version"
"""Materialization metadata key: the model version an asset registered (the gate's candidate)."""
GATE_CHECK_NAME = "promotion_gate"
"""Default name of the asset check :func:`promotion_gate_check` builds."""
RETRAIN_REASONS_TAG = "flowrecord/retrain_reasons"
"""Run tag of a retrain the sensor requested: the reasons of the triggers that fired."""
RETRAIN_TRIGGERS_TAG = "flowrecord/retrain_triggers"
"""Run tag: the triggers that fired (``drift:churn_features,new_data:churn_raw``)."""
RETRAIN_POLICY_TAG = "flowrecord/retrain_policy"
"""Run tag: the policy that asked for the run."""

_LOOKBACK = 50  # materializations of one asset read to find those of this run
_MAX_TAG = 2000  # characters of reasons kept in a run tag

AssetRef = str | dg.AssetKey | dg.AssetsDefinition
"""An asset: its key, its name as the UI writes it (``raw/orders``), or its definition."""

# ---------------------------------------------------------------------------
# resolving what the user gave
# ---------------------------------------------------------------------------


def _import(reference: str) -> Any:
    from flowrecord.lifecycle.references import resolve_reference

    return resolve_reference(reference)


def _check_gate_arg(gate: Any) -> None:
    from flowrecord.lifecycle import PromotionGate

    if isinstance(gate, PromotionGate) or callable(gate):
        return
    if isinstance(gate, str):
        module_name, sep, attr = gate.partition(":")
        if sep and module_name and attr:
            return
        raise ValueError(f"gate={gate!r} must be written 'module:NAME'")
    raise TypeError(
        "gate must be a PromotionGate, a 'module:NAME' naming one, or a function returning "
        f"one; got {type(gate).__name__}"
    )


def _resolve_gate(gate: Any, inputs: Mapping[str, Any]) -> PromotionGate:
    from flowrecord.lifecycle import PromotionGate

    obj = _import(gate) if isinstance(gate, str) else gate
    if not isinstance(obj, PromotionGate) and callable(obj):
        obj = obj(**inputs)  # a factory: the gate needs data the check loads
    if not isinstance(obj, PromotionGate):
        raise TypeError(f"the gate resolved to a {type(obj).__name__}, not a PromotionGate")
    return obj


def _policy(policy: Any) -> RetrainPolicy:
    from flowrecord.lifecycle.references import as_retrain_policy

    return as_retrain_policy(policy, _import)


def _version_text(version: Any) -> str:
    if isinstance(version, bool) or version is None:
        raise TypeError(f"a model version is a str, int or ModelVersion, not {version!r}")
    if isinstance(version, int | str):
        text = str(version).strip()
        if not text:
            raise ValueError("the model version is empty")
        return text
    inner = getattr(version, "version", None)  # a ModelVersion
    if isinstance(inner, str):
        return inner
    raise TypeError(f"a model version is a str, int or ModelVersion, not {type(version).__name__}")


def _asset_key(ref: AssetRef) -> dg.AssetKey:
    if isinstance(ref, dg.AssetsDefinition):
        return ref.key
    if isinstance(ref, dg.AssetKey):
        return ref
    if isinstance(ref, str) and ref:
        return dg.AssetKey.from_user_string(ref)
    raise TypeError(f"an asset is an AssetKey, its name or its definition, not {ref!r}")


def _dagster_name(text: str) -> str:
    """*text* as a Dagster definition name (letters, digits and underscores)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if name and not name[0].isdigit() else f"_{name}"


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def _materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str | None
) -> tuple[Mapping[str, Any] | None, str | None]:
    """Metadata and run id of *key*'s materialization in *run_id*, else of its latest one."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=_LOOKBACK, ascending=False
    )
    records = list(result.records)
    mine = [r for r in records if r.run_id == run_id] or records[:1]
    for record in mine:
        materialization = record.asset_materialization
        if materialization is not None:
            return dict(materialization.metadata or {}), record.run_id
    return None, None


def _current_run_id(context: Any) -> str | None:
    run = getattr(context, "run", None)
    return getattr(run, "run_id", None) or getattr(context, "run_id", None)


# ---------------------------------------------------------------------------
# the candidate and its lineage
# ---------------------------------------------------------------------------


def model_version_metadata(version: ModelVersion | str | int, model: str | None = None) -> dict:
    """Materialization metadata naming a registered model version: the gate's candidate.

    Return it from the asset that registers the version, so that
    :func:`promotion_gate_check` finds the candidate::

        version = register_model_version("churn", uri=uri, metrics=metrics, datasets=...)
        return dg.MaterializeResult(metadata=model_version_metadata(version))

    :param version: what ``register_model_version`` returned, or a version string.
    :param model: the model name (read from *version* when it is a ``ModelVersion``).
    """
    text = _version_text(version)
    name = model or getattr(version, "model", None)
    metadata: dict[str, Any] = {MODEL_VERSION_KEY: dg.MetadataValue.text(text)}
    if name:
        metadata[MODEL_KEY] = dg.MetadataValue.text(str(name))
    uri = getattr(version, "uri", None)
    if uri:
        metadata["flowrecord/model_uri"] = dg.MetadataValue.text(str(uri))
    return metadata


def asset_datasets(
    context: Any, **roles: AssetRef | Sequence[AssetRef]
) -> dict[str, list[dict[str, Any]]]:
    """The recorded versions of upstream assets, by role, for the registry.

    ``asset_datasets(context, train=["churn_raw", "churn_features"], eval="churn_eval_set")``
    returns, for each asset, the dataset version flowrecord recorded when it was
    stored: its name and content fingerprint, read from the ``flowrecord/fingerprint``
    metadata of its materialization in this run (else of its latest one). Pass the
    result as ``register_model_version(..., datasets=...)``: the gate then asks for
    the validations of that exact data, and ``flowrecord explain`` walks back to it.

    An asset with no recorded fingerprint (never materialised, or stored by an IO
    manager flowrecord does not wrap) is left out with a warning; a gate that
    requires its validations then refuses.

    :param context: the asset's execution context (``context.instance``, ``context.run``).
    """
    instance = context.instance
    run_id = _current_run_id(context)
    out: dict[str, list[dict[str, Any]]] = {}
    for role, refs in roles.items():
        items: list[Any] = list(refs) if isinstance(refs, list | tuple) else [refs]
        found = out.setdefault(role, [])
        for ref in items:
            key = _asset_key(ref)
            metadata, _ = _materializations(instance, key, run_id)
            fingerprint = _value((metadata or {}).get(FINGERPRINT_KEY))
            if not fingerprint:
                log.warning(
                    "flowrecord: no recorded version of asset %s to register (no %s metadata)",
                    key_name(key),
                    FINGERPRINT_KEY,
                )
                continue
            found.append({"name": key_name(key), "fingerprint": str(fingerprint), "role": role})
    return out


# ---------------------------------------------------------------------------
# promotion gate: asset check
# ---------------------------------------------------------------------------


def _decision_metadata(decision: GateDecision, source: str) -> dict[str, Any]:
    from flowrecord import recorder

    metadata: dict[str, Any] = {
        "model": dg.MetadataValue.text(decision.model),
        "version": dg.MetadataValue.text(decision.version),
        "gate": dg.MetadataValue.text(decision.gate),
        "promoted": dg.MetadataValue.bool(decision.applied),
        "passed": dg.MetadataValue.bool(decision.passed),
        "champion_before": dg.MetadataValue.text(decision.champion_version or "none"),
        "version_source": dg.MetadataValue.text(source),
        "reasons": dg.MetadataValue.json(list(decision.reasons)),
        "failures": dg.MetadataValue.json(list(decision.failures)),
        "checks": dg.MetadataValue.json(_safe([c.as_dict() for c in decision.checks])),
        "evidence": dg.MetadataValue.json(_safe(dict(decision.evidence))),
    }
    if decision.decision_id:
        metadata["decision_id"] = dg.MetadataValue.text(decision.decision_id)
    task = recorder.current_task()
    if task is not None:
        metadata[RUN_ID_KEY] = dg.MetadataValue.text(task.run.run_id)
        metadata[TASK_ID_KEY] = dg.MetadataValue.text(task.task_id)
    return metadata


def _verdict(decision: GateDecision) -> str:
    verdict = "promoted" if decision.applied else "refused"
    head = f"flowrecord: {decision.model} version {decision.version} {verdict} by gate {decision.gate!r}"
    if decision.applied:
        return head + "."
    return (head + ": " + "; ".join(decision.failures))[:2000]


def _refused(why: str, **extra: Any) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"promoted": dg.MetadataValue.bool(False)}
    metadata["error"] = dg.MetadataValue.text(why[:2000])
    metadata.update({k: dg.MetadataValue.text(str(v)) for k, v in extra.items() if v is not None})
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"flowrecord: nothing promoted: {why}"[:2000],
        metadata=metadata,
    )


def _candidate(
    context: Any, key: dg.AssetKey, version_from: Any
) -> tuple[str | None, str, str | None]:
    """(version or None for the gate's own candidate, where it came from, model named there)."""
    if version_from is None:
        return None, "the gate's candidate", None
    if callable(version_from):
        return _version_text(version_from(context)), "version_from()", None
    metadata, run_id = _materializations(context.instance, key, _current_run_id(context))
    if metadata is None:
        raise LookupError(f"asset {key_name(key)} has no materialization to take a version from")
    raw = _value(metadata.get(version_from))
    if raw is None or raw == "":
        raise LookupError(
            f"the materialization of {key_name(key)} (run {run_id}) has no {version_from!r} "
            "metadata: return model_version_metadata(version) from the asset"
        )
    model = _value(metadata.get(MODEL_KEY))
    here = "this run" if run_id == _current_run_id(context) else f"run {run_id}"
    return _version_text(raw), f"{version_from} of {key_name(key)} ({here})", model


def _apply_gate(
    context: Any, key: dg.AssetKey, gate: Any, version_from: Any, inputs: Mapping[str, Any]
) -> dg.AssetCheckResult:
    from flowrecord import recorder

    try:
        resolved = _resolve_gate(gate, inputs)
    except Exception as exc:
        return _refused(f"the promotion gate could not be loaded: {type(exc).__name__}: {exc}")
    try:
        version, source, model = _candidate(context, key, version_from)
    except Exception as exc:
        return _refused(f"no candidate version: {type(exc).__name__}: {exc}", gate=resolved.name)
    if model and str(model) != resolved.model:
        return _refused(
            f"asset {key_name(key)} registered a version of model {model!r}, but the gate "
            f"judges {resolved.model!r}",
            gate=resolved.name,
        )
    if recorder.current_task() is None:
        log.warning(
            "flowrecord: the promotion gate check on %s is not recorded (instrument the "
            "Definitions); its decision is kept outside any task",
            key_name(key),
        )
    try:
        decision = resolved.apply(version)
    except Exception as exc:
        return _refused(f"the gate failed: {type(exc).__name__}: {exc}", gate=resolved.name)
    for reason in decision.reasons:
        context.log.info(f"gate {decision.gate!r}: {reason}")
    return dg.AssetCheckResult(
        passed=decision.applied,
        severity=dg.AssetCheckSeverity.ERROR,
        description=_verdict(decision),
        metadata=_decision_metadata(decision, source),
    )


def promotion_gate_check(
    gate: PromotionGate | str | Callable[..., PromotionGate],
    *,
    asset: AssetRef,
    version_from: str | Callable[[Any], Any] | None = MODEL_VERSION_KEY,
    additional_ins: Mapping[str, dg.AssetIn] | None = None,
    name: str = GATE_CHECK_NAME,
    description: str | None = None,
    blocking: bool = True,
) -> dg.AssetChecksDefinition:
    """A blocking asset check on *asset* that applies a promotion gate to the version it registered.

    The check applies the gate: ``champion`` moves to the candidate only when every
    criterion passed, and the decision is recorded by flowrecord under the check's
    task. It passes when the candidate was promoted; a refusal fails it with
    severity ERROR and, as it is blocking, keeps the assets downstream of *asset*
    from materialising in the run. Its metadata holds every reason, the failed
    ones, each check with its evidence and the decision id::

        gate_check = promotion_gate_check(CHURN_GATE, asset="churn_model_version")

    :param gate: a :class:`~flowrecord.lifecycle.PromotionGate`, ``"module:NAME"``
        naming one (imported when the check runs), or a function returning one,
        called with the loaded *additional_ins* as keyword arguments (a gate whose
        bootstrap needs evaluation data).
    :param asset: the asset that registers the candidate version.
    :param version_from: where the candidate version is: a metadata key of
        *asset*'s materialization in this run (else its latest), by default
        :data:`MODEL_VERSION_KEY`, as :func:`model_version_metadata` writes it; a
        function of the check's context returning the version; or None for the
        gate's own ``candidate`` (``"latest"``).
    :param additional_ins: other assets the check loads, passed to a gate factory
        (``{"eval_set": dg.AssetIn("churn_eval_set")}``).
    :param blocking: keep downstream assets from materialising on a refusal.
    :raises TypeError: / :raises ValueError: *gate* is none of those, or an input
        name is not a Python identifier.

    The check fails closed: a gate that cannot be loaded, a missing candidate
    version, a version of another model or a gate that raises fail the check (and
    block), with the reason in its description and metadata.
    """
    _check_gate_arg(gate)
    if not (version_from is None or callable(version_from) or isinstance(version_from, str)):
        raise TypeError("version_from must be a metadata key, a function or None")
    key = _asset_key(asset)
    ins = dict(additional_ins or {})
    for in_name in ins:
        if not in_name.isidentifier() or in_name == "context":
            raise ValueError(f"additional_ins: {in_name!r} is not usable as an input name")

    def _gate_check(context, **inputs):  # type: ignore[no-untyped-def]
        return _apply_gate(context, key, gate, version_from, inputs)

    # Dagster reads a check's inputs from its parameters: one per additional input.
    params = [inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ins]
    _gate_check.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    _gate_check.__name__ = name

    label = gate if isinstance(gate, str) else getattr(gate, "name", None) or "factory"
    return dg.asset_check(
        asset=key,
        name=name,
        blocking=blocking,
        additional_ins=ins or None,
        description=description
        or (
            f"flowrecord: the promotion gate ({label}) judges the version {key_name(key)} "
            "registered; champion moves only when it passes."
        ),
        metadata={"flowrecord/gate": str(label)},
    )(_gate_check)


# ---------------------------------------------------------------------------
# promotion gate: op
# ---------------------------------------------------------------------------


def promotion_gate_op(
    gate: PromotionGate | str | Callable[[], PromotionGate],
    *,
    name: str = GATE_CHECK_NAME,
    description: str | None = None,
) -> dg.OpDefinition:
    """An op that applies a promotion gate to the version it receives; its outputs branch the job.

    The op takes the candidate (a version string or int, or the ``ModelVersion``
    ``register_model_version`` returned) as its input ``version`` and yields the
    decision (as a dict) on exactly one of two optional outputs, ``promoted`` or
    ``refused``; ops wired to the other one are skipped (Dagster's conditional
    branching), and the run succeeds either way::

        gate = promotion_gate_op(CHURN_GATE)

        @dg.job
        def churn():
            decision = gate(register())
            deploy(decision.promoted)
            keep_champion(decision.refused)

    :param gate: a :class:`~flowrecord.lifecycle.PromotionGate`, ``"module:NAME"``,
        or a function of no arguments returning one.

    It fails closed: a gate that cannot be loaded or a version it cannot use fails
    the op, so nothing downstream runs.
    """
    _check_gate_arg(gate)

    @dg.op(
        name=name,
        description=description or "flowrecord: apply a promotion gate to the candidate version.",
        ins={"version": dg.In(description="the candidate model version")},
        out={
            "promoted": dg.Out(is_required=False, description="the decision, when promoted"),
            "refused": dg.Out(is_required=False, description="the decision, when refused"),
        },
    )
    def _gate_op(context, version):  # type: ignore[no-untyped-def]
        resolved = _resolve_gate(gate, {})
        decision = resolved.apply(_version_text(version))
        for reason in decision.reasons:
            context.log.info(f"gate {decision.gate!r}: {reason}")
        output = "promoted" if decision.applied else "refused"
        yield dg.Output(
            decision.as_dict(), output, metadata=_decision_metadata(decision, "input version")
        )

    return _gate_op


# ---------------------------------------------------------------------------
# retraining policy: schedule and sensor
# ---------------------------------------------------------------------------


def _job_kwargs(job: Any) -> dict[str, Any]:
    if isinstance(job, str):
        return {"job_name": job}
    return {"job": job}


def retrain_schedule(
    policy: RetrainPolicy | str,
    job: Any,
    *,
    name: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """The policy's ``cron`` as a Dagster schedule of *job*, in UTC.

    >>> import dagster as dg
    >>> from flowrecord.lifecycle import RetrainPolicy
    >>> @dg.op
    ... def fit(): ...
    >>> @dg.job
    ... def train(): fit()
    >>> s = retrain_schedule(RetrainPolicy(model="churn", cron="0 3 * * 1"), train)
    >>> s.name, s.cron_schedule, s.execution_timezone
    ('churn_retrain_schedule', '0 3 * * 1', 'UTC')

    :param job: the job to run (a job, an asset job, or its name).
    :raises ValueError: the policy has no ``cron``.
    """
    p = _policy(policy)
    if not p.cron:
        raise ValueError(f"retrain policy {p.name!r} of {p.model!r} has no cron to schedule")
    from flowrecord.lifecycle._cron import expand_macro

    cron = expand_macro(p.cron)
    return dg.ScheduleDefinition(
        name=name or f"{_dagster_name(p.model)}_retrain_schedule",
        cron_schedule=cron,
        execution_timezone="UTC",
        run_config=run_config,
        tags={
            RETRAIN_POLICY_TAG: p.name,
            MODEL_KEY: p.model,
            RETRAIN_TRIGGERS_TAG: f"cron:{p.cron}",
        },
        default_status=default_status,
        description=description
        or f"flowrecord: retrain {p.model} on the cron of policy {p.name!r} ({p.cron}, UTC).",
        **_job_kwargs(job),
    )


def retrain_run_request(
    policy: RetrainPolicy | str,
    *,
    run_config: Mapping[str, Any] | None = None,
    record_as: str | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """Evaluate *policy* against the record: a ``RunRequest`` when a data or metric trigger fired.

    What :func:`retrain_sensor` does on each tick, callable on its own. Every
    trigger's evaluation is recorded (``retrain:*`` validations) under the current
    flowrecord task, or, with *record_as*, under a run of that name with one task
    (a sensor has no task of its own). The ``cron`` trigger never requests a run:
    that is the schedule's business.

    The run key is derived from what the fired triggers saw (the current data's
    fingerprint, the champion, the metric point), so Dagster requests one run per
    new situation, not one per tick. Tags: :data:`RETRAIN_REASONS_TAG`,
    :data:`RETRAIN_TRIGGERS_TAG`, :data:`RETRAIN_POLICY_TAG` and :data:`MODEL_KEY`.
    """
    from flowrecord import recorder

    p = _policy(policy)
    if record_as is not None and recorder.current_task() is None:
        with (
            recorder.run(record_as, orchestrator="dagster", tags={"dagster/sensor": record_as}),
            recorder.task(
                "check_retrain", attributes={"model": p.model, "policy": p.name, "kind": "sensor"}
            ),
        ):
            decision = p.check()
    else:
        decision = p.check()
    fired = decision.event_triggers
    if not fired:
        lines = list(decision.reasons) + [f"error: {e}" for e in decision.errors]
        return dg.SkipReason(
            f"no retrain of {p.model} due (policy {p.name!r}): " + "; ".join(lines)
        )
    return dg.RunRequest(
        run_key=f"flowrecord-retrain-{_dagster_name(p.model)}-{decision.event_key()}",
        run_config=dict(run_config or {}),
        tags={
            RETRAIN_REASONS_TAG: " | ".join(t.reason for t in fired)[:_MAX_TAG],
            RETRAIN_TRIGGERS_TAG: ",".join(t.label for t in fired),
            RETRAIN_POLICY_TAG: p.name,
            MODEL_KEY: p.model,
        },
    )


def retrain_sensor(
    policy: RetrainPolicy | str,
    job: Any,
    *,
    name: str | None = None,
    minimum_interval_seconds: int = 3600,
    run_config: Mapping[str, Any] | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    description: str | None = None,
) -> dg.SensorDefinition:
    """A sensor that runs *job* when the policy's new-data, drift or metric-decay triggers fire.

    Each tick evaluates the policy against the record (the latest recorded version
    of each watched dataset, the champion's training data, the latest metric
    points) and records every trigger's evaluation with its evidence, under a
    flowrecord run named after the sensor. It yields a ``RunRequest`` (see
    :func:`retrain_run_request` for its run key and tags) when a data or metric
    trigger fired, and a ``SkipReason`` with every trigger's reason otherwise.

    :param job: the job to run (a job, an asset job, or its name).
    :param minimum_interval_seconds: seconds between ticks: each one reads the
        store and may profile nothing (profiles were recorded with the data).
    :raises ValueError: the policy has only a ``cron`` (use :func:`retrain_schedule`).
    """
    p = _policy(policy)
    if not (p.new_data or p.drift or p.metric_decay):
        raise ValueError(
            f"retrain policy {p.name!r} of {p.model!r} has no data or metric trigger to sense; "
            "its cron is retrain_schedule()'s"
        )
    sensor_name = name or f"{_dagster_name(p.model)}_retrain_sensor"

    def _evaluate(context) -> Iterator[Any]:  # type: ignore[no-untyped-def]
        outcome = retrain_run_request(p, run_config=run_config, record_as=sensor_name)
        if isinstance(outcome, dg.RunRequest):
            context.log.info(f"retrain {p.model}: {outcome.tags[RETRAIN_REASONS_TAG]}")
        yield outcome

    return dg.SensorDefinition(
        name=sensor_name,
        evaluation_fn=_evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description
        or f"flowrecord: retrain {p.model} when policy {p.name!r} sees new data, drift or decay.",
        **_job_kwargs(job),
    )
