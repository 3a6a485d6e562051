"""What a Metaflow step read and wrote, told by Metaflow's own artifact identities.

Metaflow stores every artifact (``self.x``) content-addressed: a task's
datastore maps each artifact name to the sha1 of its serialised value, and an
artifact a step merely inherits keeps the sha it had upstream. So a step *wrote*
an artifact exactly when its name is new or its sha differs from the sha under
that name in every input of the step; comparing those maps before and after the
step tells writes from inheritance without looking at any value. A step *read*
an artifact when it loaded it from an input, which this module sees by watching
the input datastores' loads.

Data frames and Arrow tables are handed to :func:`flowrecord.log_dataset` as
objects, so they get a content fingerprint, a schema and a profile; any other
artifact is recorded by Metaflow's identity: the URI
``metaflow://Flow/run_id/step/task_id/name#sha1=<sha>`` (the task it was read
from or written by, the part Metaflow's client takes as a pathspec) and, as its
fingerprint, ``metaflow-sha1:<sha>``, which makes equal content equal across
tasks and runs without flowrecord reading the value. Nothing here loads an
artifact the step did not load itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from flowrecord import recorder
from flowrecord._frozen import frozen, set_field

__all__ = [
    "SHA_FINGERPRINT_PREFIX",
    "ArtifactTracker",
    "MetaflowArtifact",
    "artifact_uri",
    "is_data_frame",
    "written_artifacts",
]

log = logging.getLogger("flowrecord")

#: Names Metaflow keeps on every flow object for itself; never lineage.
_RESERVED = frozenset({"name", "input", "index"})

#: How the fingerprint of an artifact recorded by Metaflow's sha starts: the sha1 of
#: Metaflow's serialised value, not of the data's content (a frame gets ``xxh3:``).
SHA_FINGERPRINT_PREFIX = "metaflow-sha1:"


def artifact_uri(
    flow: str, run_id: str, step: str, task_id: str, name: str, sha: str | None = None
) -> str:
    """The URI flowrecord gives a Metaflow artifact: its pathspec, then its sha.

    >>> artifact_uri("TrainFlow", "1700", "train", "3", "model", "9f2c")
    'metaflow://TrainFlow/1700/train/3/model#sha1=9f2c'
    """
    uri = f"metaflow://{flow}/{run_id}/{step}/{task_id}/{name}"
    return f"{uri}#sha1={sha}" if sha else uri


def is_user_artifact(name: str) -> bool:
    """Whether *name* is an artifact the user set (not one of Metaflow's own)."""
    return bool(name) and not name.startswith("_") and name not in _RESERVED


def is_data_frame(obj: object) -> bool:
    """Whether *obj* is a pandas/polars frame or an Arrow table (worth fingerprinting).

    Looks only at libraries already imported, so it never imports pandas to say no.
    """
    try:
        from flowrecord.collectors.kinds import data_kind

        return data_kind(obj) is not None
    except Exception:
        return False


@frozen
class MetaflowArtifact:
    """A Metaflow artifact as Metaflow identifies it: task, name and content sha.

    Stands in for the value in the record when the value is not at hand (an
    artifact the step wrote but no longer holds).
    """

    __slots__ = ("name", "sha", "type_name", "uri")

    uri: str
    """``metaflow://Flow/run_id/step/task_id/name#sha1=<sha>``."""
    name: str
    sha: str | None
    """Metaflow's content-addressed sha1 of the serialised value."""
    type_name: str | None

    # Written out rather than made by @dataclass(frozen=True, slots=True), which cost
    # every task process ~1 ms at import; @frozen gives it that dataclass's behaviour.
    def __init__(self, uri: str, name: str, sha: str | None, type_name: str | None = None) -> None:
        set_field(self, "uri", uri)
        set_field(self, "name", name)
        set_field(self, "sha", sha)
        set_field(self, "type_name", type_name)


def _items(datastore: Any) -> dict[str, str]:
    """Artifact name -> sha of a task datastore (empty when it cannot say)."""
    try:
        return dict(datastore.items())
    except Exception:
        return {}


def _pathspec(datastore: Any) -> tuple[str, str, str]:
    return (str(datastore.run_id), str(datastore.step_name), str(datastore.task_id))


def written_artifacts(
    output: Mapping[str, str], inputs: Iterable[Mapping[str, str]], exclude: Iterable[str] = ()
) -> dict[str, str]:
    """Artifacts a step wrote: name -> sha for names new or changed against every input.

    >>> written_artifacts({"a": "1", "b": "2", "c": "9"}, [{"a": "1", "b": "3"}])
    {'b': '2', 'c': '9'}
    """
    skip = set(exclude)
    before = list(inputs)
    return {
        name: sha
        for name, sha in output.items()
        if is_user_artifact(name)
        and name not in skip
        and all(previous.get(name) != sha for previous in before)
    }


def _type_name(obj: object) -> str:
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class ArtifactTracker:
    """Follows one task's artifacts: which it loaded from its inputs, which it wrote.

    :param flow: flow name; *run_id*, *step*, *task_id*: the task being recorded.
    :param exclude: artifact names that are not lineage (the flow's Parameters).
    """

    def __init__(
        self, flow: str, run_id: str, step: str, task_id: str, exclude: Iterable[str] = ()
    ) -> None:
        self.flow = flow
        self.run_id = str(run_id)
        self.step = step
        self.task_id = str(task_id)
        self.exclude = frozenset(exclude)
        self.reads: list[MetaflowArtifact] = []
        self.read_events: dict[str, Any] = {}
        """Artifact name -> the dataset event of its (first) read in this step."""
        self._seen: set[tuple[str, str]] = set()
        self._inputs: list[Any] = []
        self._input_items: list[dict[str, str]] = []
        self._items_of: dict[int, dict[str, str]] = {}  # id(datastore) -> its items
        self._output: Any = None
        # name -> the object as the step left it. Metaflow drops it from the flow
        # while persisting; holding it until the task ends keeps memory at what
        # the step itself held when it returned.
        self._candidates: dict[str, object] = {}

    # -- reads -----------------------------------------------------------------

    def watch(self, inputs: Iterable[Any], output: Any) -> None:
        """Start seeing which artifacts the step loads from *inputs* (and *output*).

        Metaflow loads an artifact on the step's first access to ``self.x`` (or
        ``inputs.a.x`` in a join) through the datastore's ``load_artifacts``; a
        wrapper on each datastore instance reports those loads and nothing else.
        """
        self._output = output
        for datastore in inputs:
            items = _items(datastore)
            self._inputs.append(datastore)
            self._input_items.append(items)
            self._items_of[id(datastore)] = items
            self._wrap(datastore)
        if output is not None:
            self._wrap(output)

    def _wrap(self, datastore: Any) -> None:
        try:
            original = datastore.load_artifacts
        except AttributeError:
            return

        def load_artifacts(names: Any) -> Any:
            for name, obj in original(names):
                try:
                    self._loaded(datastore, name, obj)
                except Exception as exc:  # lineage must never break a load
                    log.warning("flowrecord: could not record read of %s: %s", name, exc)
                yield name, obj

        try:
            datastore.load_artifacts = load_artifacts
        except (AttributeError, TypeError) as exc:  # a datastore that cannot be watched
            log.warning("flowrecord: reads from %s are not recorded: %s", datastore, exc)

    def _source(self, datastore: Any, name: str) -> tuple[tuple[str, str, str], str | None]:
        """(run, step, task) an artifact was loaded from, and its sha."""
        if datastore is self._output:
            # Passed down from an input (a join's merge, a parameter): name the input.
            sha = _items(datastore).get(name)
            for source, items in zip(self._inputs, self._input_items, strict=False):
                if sha is not None and items.get(name) == sha:
                    return _pathspec(source), sha
            return (self.run_id, self.step, self.task_id), sha
        known = self._items_of.get(id(datastore))
        items = known if known is not None else _items(datastore)
        return _pathspec(datastore), items.get(name)

    def _loaded(self, datastore: Any, name: str, obj: object) -> None:
        if not is_user_artifact(name) or name in self.exclude:
            return
        (run_id, step, task_id), sha = self._source(datastore, name)
        key = (f"{run_id}/{step}/{task_id}", name)
        if key in self._seen:
            return
        self._seen.add(key)
        uri = artifact_uri(self.flow, run_id, step, task_id, name, sha)
        ref = MetaflowArtifact(uri=uri, name=name, sha=sha, type_name=_type_name(obj))
        self.reads.append(ref)
        # Recorded at load time: a frame is fingerprinted as it was read, before
        # the step has a chance to change it in place.
        event = log_artifact_dataset(ref, obj, role="input")
        if event is not None:
            self.read_events.setdefault(name, event)

    # -- writes ----------------------------------------------------------------

    def keep_candidates(self, flow: object) -> None:
        """Note what the step left on ``self`` before Metaflow persists (and drops) it."""
        try:
            state = vars(flow)
        except TypeError:
            return
        for name, obj in list(state.items()):
            if is_user_artifact(name) and name not in self.exclude:
                self._candidates[name] = obj

    def record_writes(self) -> list[MetaflowArtifact]:
        """Record the artifacts the step wrote (call after Metaflow persisted them)."""
        if self._output is None:
            return []
        written = written_artifacts(_items(self._output), self._input_items, self.exclude)
        refs = []
        for name in sorted(written):
            sha = written[name]
            uri = artifact_uri(self.flow, self.run_id, self.step, self.task_id, name, sha)
            obj = self._candidates.get(name, _MISSING)
            type_name = None if obj is _MISSING else _type_name(obj)
            ref = MetaflowArtifact(uri=uri, name=name, sha=sha, type_name=type_name)
            refs.append(ref)
            log_artifact_dataset(ref, obj, role="output")
        self._candidates.clear()
        return refs


_MISSING = object()


def log_artifact_dataset(ref: MetaflowArtifact, obj: object, *, role: str) -> Any:
    """Hand one artifact to the recorder; returns its dataset event (None if that failed).

    Frames and tables go as values (fingerprint, schema, profile). Any other
    artifact goes with Metaflow's sha as its fingerprint, so the recorder reads
    nothing: a string naming a big directory costs no walk, a model no pickling.
    """
    try:
        if obj is not _MISSING and is_data_frame(obj):
            return recorder.log_dataset(obj, name=ref.name, role=role, uri=ref.uri)
        if ref.sha:
            return recorder.log_dataset(
                ref,
                name=ref.name,
                role=role,
                uri=ref.uri,
                fingerprint=SHA_FINGERPRINT_PREFIX + ref.sha,
                data_type=ref.type_name or "metaflow artifact",
            )
        # No sha (a datastore that could not say): describe the value, as any object.
        value: object = (
            ref if obj is _MISSING or isinstance(obj, str | bytes | os.PathLike) else obj
        )
        return recorder.log_dataset(value, name=ref.name, role=role, uri=ref.uri)
    except Exception as exc:
        log.warning("flowrecord: could not record artifact %s: %s", ref.uri, exc)
        return None
