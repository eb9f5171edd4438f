"""The contract between the harness and a method under test.

An adapter is a class registered under a name (``@register("name")``) with a config dataclass
``Config``. The runner builds it from the resolved config, calls ``fit`` once with the training
data only, then asks for ``score`` (all items) or ``rank`` (a top-K list) for batches of users.
The harness owns everything else: truncation of nothing, masking, tie-breaking, metrics, slices.

An adapter never sees validation or test targets. ``fit`` receives the training sequences and a
``validate`` callback: the harness scores the adapter's *current* state on the validation cases
and returns NDCG@10, which is how early stopping and model selection work. ``validate(cases=n)``
scores a seeded sample of n validation cases instead (the same sample at every call), for
methods whose pass over every case costs minutes; the curve point records n.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import numpy as np

from benchmark.errors import BenchmarkError, MethodError, one_line

if TYPE_CHECKING:  # type-only: `import benchmark` stays cheap
    from benchmark.cache import Cache
    from benchmark.data import ItemCatalog

# What an adapter may declare in `needs`, each one acted on by the runner before fitting:
# "item_text": the dataset must carry item text (text encoders, semantic IDs, LLM prompts).
# "transfer_corpus": the method may learn from another dataset instead of this one's sequences
#   (zero-shot transfer). Its Config must have a `transfer_from` key; where the resolved value is
#   not None (a dataset name or path, or "auto": the one other dataset under configs/datasets/),
#   the runner loads that dataset (with the profile's max_users), builds its leave-one-out
#   split and hands its training sequences and catalogue as `ctx.transfer`
#   (a :class:`TransferCorpus`); None leaves `ctx.transfer` None.
KNOWN_NEEDS = frozenset({"item_text", "transfer_corpus"})
# What an adapter returns, and the method each output requires.
OUTPUTS = {"scores": "score", "ranking": "rank"}


def check_contract(name: str, cls: type) -> None:
    """Raise BenchmarkError if ``cls`` cannot serve as method ``name`` (checked at registration
    and lookup, so a broken method fails before any data is loaded, not midway through a run)."""

    def fail(problem: str) -> NoReturn:
        where = f"{cls.__module__}:{cls.__qualname__}" if isinstance(cls, type) else repr(cls)
        raise BenchmarkError(f"method {name!r} ({where}): {problem}")

    if not isinstance(cls, type):
        fail("not a class")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        fail("no `Config` dataclass (an empty `@dataclass class Config: pass` will do)")
    output = getattr(cls, "output", "scores")  # the evaluator's default too
    if output not in OUTPUTS:
        fail(f"output {output!r} is not one of {sorted(OUTPUTS)}")
    if not callable(getattr(cls, OUTPUTS[output], None)):
        fail(f"output {output!r} but no {OUTPUTS[output]}() method")
    if not callable(getattr(cls, "fit", None)):
        fail("no fit() method")
    needs = getattr(cls, "needs", frozenset())
    if not isinstance(needs, (set, frozenset)) or not all(isinstance(n, str) for n in needs):
        fail(f"`needs` must be a frozenset of strings, got {needs!r}")
    unknown = sorted(needs - KNOWN_NEEDS)
    if unknown:
        fail(f"unknown needs {unknown}; the runner acts on {sorted(KNOWN_NEEDS)}")
    if "transfer_corpus" in needs and "transfer_from" not in {
            f.name for f in dataclasses.fields(config)}:
        fail("needs 'transfer_corpus' but its Config has no `transfer_from` key")
    if not isinstance(getattr(cls, "wants_gpu", False), bool):
        fail(f"`wants_gpu` must be True or False, got {cls.wants_gpu!r}")


@contextmanager
def method_phase(method: str, phase: str) -> Iterator[None]:
    """Around a call into a method's code: an exception it raises becomes a :class:`MethodError`
    naming the method and the phase (``fit``, ``score``, ...), the original kept as its cause;
    a BenchmarkError the method raises on purpose passes through unchanged.

    ``sys.exit()`` (a SystemExit, whatever its code) is a failure of the method too: it must not
    end the invocation, let alone with status 0 and no result. KeyboardInterrupt (Ctrl-C, and the
    CLI's SIGTERM, which unwinds as one) passes through, so the CLI's 130 and 143 stand."""
    try:
        yield
    except BenchmarkError:
        raise
    except SystemExit as exc:
        code = "" if exc.code is None else repr(exc.code)
        raise MethodError(f"method {method!r} failed in {phase}: it called sys.exit({code})"
                          ) from exc
    except Exception as exc:
        raise MethodError(f"method {method!r} failed in {phase}: {one_line(exc)}") from exc


@dataclass(frozen=True)
class TrainData:
    """Everything a method may learn from.

    ``sequences[u]`` is user ``u``'s chronological training sequence of item indices
    (``0 .. n_items-1``). Validation and test targets are not in it, and under the
    ``cold_item`` protocol no interaction with a cold item is in it either.
    """

    n_items: int
    sequences: list[np.ndarray]
    catalog: ItemCatalog
    item_counts: np.ndarray  # training interactions per item, from `sequences` only

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) index arrays of all training interactions, in sequence order."""
        users = np.repeat(np.arange(self.n_users), [len(s) for s in self.sequences])
        items = np.concatenate(self.sequences) if self.sequences else np.zeros(0, dtype=np.int64)
        return users, items.astype(np.int64)


@dataclass(frozen=True)
class TransferCorpus:
    """Another dataset's training data, for a method that learns away from the dataset under
    test (need ``"transfer_corpus"``): ``train`` holds the source's leave-one-out training
    sequences (its validation and test targets are not in them) and its catalogue. The hashes
    are the source's fingerprints, for cache keys, as RunContext's ``train_hash`` and
    ``catalog_hash`` are the target's."""

    name: str  # the source dataset's name
    train: TrainData
    train_hash: str
    catalog_hash: str

    def fingerprint(self) -> str:
        from benchmark.cache import stable_hash

        return stable_hash([self.name, self.train_hash, self.catalog_hash])


@dataclass(frozen=True)
class UserBatch:
    """A batch of users to score: their indices and input histories (oldest first).

    At validation time the input history is the training sequence; at test time it is training
    + the validation item (minus cold items under the cold protocol). Histories may be empty.
    """

    users: np.ndarray  # [B] user indices
    histories: list[np.ndarray]  # B arrays of item indices, chronological

    def __len__(self) -> int:
        return len(self.users)

    def padded(self, max_len: int, pad: int = -1, offset: int = 0) -> np.ndarray:
        """Left-padded [B, max_len] matrix of the last ``max_len`` items (+ ``offset``)."""
        out = np.full((len(self), max_len), pad, dtype=np.int64)
        for row, hist in enumerate(self.histories):
            tail = hist[-max_len:] if max_len > 0 else hist[:0]
            if len(tail):
                out[row, max_len - len(tail) :] = tail + offset
        return out


@dataclass
class RunContext:
    """What the runner hands an adapter besides the data: seed, device, cache, and the training
    record (stop reason, examples seen, validation curve) that goes into the result JSON."""

    seed: int
    device: str
    cache: Cache
    protocol: str
    # Fingerprints of the inputs: cache keys of shared artefacts are built from these, so an
    # artefact that depends on item text only (`catalog_hash`) is shared by both protocols,
    # and one that depends on training data (`train_hash`) is not.
    catalog_hash: str
    train_hash: str
    show_progress: bool = True
    # The source dataset's training data, for a method with the "transfer_corpus" need and a
    # `transfer_from` set (see KNOWN_NEEDS); None otherwise.
    transfer: TransferCorpus | None = None
    stop_reason: str = "not reported"
    examples_seen: int = 0  # training examples consumed so far (the curve's x axis)
    # One point per validate() call: {"examples", "seconds", "valid_ndcg10"} (the runner adds
    # them; a checkpoint loaded from the cache replays the points of its original training).
    curve: list[dict[str, float]] = field(default_factory=list)
    restored_seconds: float = 0.0  # training time of checkpoints loaded instead of trained
    started: float = field(default_factory=time.perf_counter)

    def report_stop(self, reason: str) -> None:
        """Record why training stopped ("early_stop", "epoch_cap", "no_training", ...)."""
        self.stop_reason = reason

    def count_examples(self, n: int) -> None:
        """A training loop consumed ``n`` more examples (sequences, windows or prompts)."""
        self.examples_seen += int(n)

    def elapsed(self) -> float:
        """Training wall seconds so far, counting cached checkpoints at their original cost."""
        return time.perf_counter() - self.started + self.restored_seconds

    def add_point(self, valid_ndcg10: float, cold_valid_ndcg10: float | None = None,
                  cases: int | None = None) -> None:
        """One validation point; under ``cold_item`` also the ``cold_valid`` slice's NDCG@10;
        ``cases``: how many validation cases it used when not all of them (a sample)."""
        point = {"examples": self.examples_seen, "seconds": round(self.elapsed(), 3),
                 "valid_ndcg10": float(valid_ndcg10)}
        if cold_valid_ndcg10 is not None:
            point["valid_ndcg10_cold_valid"] = float(cold_valid_ndcg10)
        if cases is not None:
            point["valid_cases"] = int(cases)
        self.curve.append(point)

    def mark(self) -> tuple[int, int, float]:
        """Where the training record stands now; :meth:`record_since` takes it back."""
        return len(self.curve), self.examples_seen, self.elapsed()

    def record_since(self, mark: tuple[int, int, float]) -> dict[str, Any]:
        """The part of the training record made since ``mark`` (stored with a checkpoint)."""
        n_points, examples, seconds = mark
        return {"curve": self.curve[n_points:], "examples": self.examples_seen - examples,
                "seconds": self.elapsed() - seconds, "stop_reason": self.stop_reason}

    def replay(self, record: dict[str, Any]) -> None:
        """Take over the record of a checkpoint trained earlier, as if it had trained now."""
        self.curve.extend(record["curve"])
        self.examples_seen += int(record["examples"])
        self.restored_seconds += float(record["seconds"])
        self.stop_reason = record["stop_reason"]


class AdapterBase:
    """Optional convenience base: config handling, parameter counting, empty diagnostics."""

    Config: ClassVar[type] = dataclasses.make_dataclass("Config", [])
    needs: ClassVar[frozenset[str]] = frozenset()
    output: ClassVar[str] = "scores"
    # True for methods that train or run an LLM-sized network: under `--executor ray` their jobs
    # reserve one GPU where the cluster has one (benchmark.ray_executor). A YAML variant shares
    # its class's answer. The serial runner ignores it (it uses a GPU wherever torch sees one).
    wants_gpu: ClassVar[bool] = False
    # Items the method cannot tell apart (item -> group, e.g. a shared full semantic ID): the
    # evaluator ties them pessimistically (benchmark.evaluation). None: every item its own.
    tie_groups: Any = None
    # A ranking method's test list length when it exceeds the harness's top_k (0: top_k).
    list_length: int = 0

    def __init__(self, config: Any) -> None:
        self.config = config

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters; found on any ``torch.nn.Module`` attribute."""
        trainable = total = 0
        seen: set[int] = set()
        for value in vars(self).values():
            if hasattr(value, "parameters") and hasattr(value, "named_parameters"):
                for p in value.parameters():
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                    total += p.numel()
                    trainable += p.numel() if p.requires_grad else 0
        return trainable, total

    def diagnostics(self) -> dict[str, Any]:
        return {}
