"""When an aggregate may leave the coordinator, and the journal that makes a restart keep to it.

The guarantee (issue 13): **at most one aggregate of a round is ever released over a given set
of clients, and never two over different sets.** Two released sums of one round over sets that
differ by one client give that client's update exactly when the clients resubmit the same update
(a cached one, or a deterministic retraining), which is what a retried attempt does.

What leaves the coordinator, and how each is covered:

- the new global model, the evaluation metrics computed on it and the statistics sum handed out
  with the next task: derived from an aggregate the coordinator holds in the clear (plain,
  secagg after unmasking, ckks after decryption). :mod:`fedcore.coordinator.phases` writes the
  round's checkpoint (fsync'd, atomic rename, see :func:`~fedcore.coordinator.checkpoint.atomic_write`)
  *before* any task that carries them is served; a restarted coordinator that finds it resumes
  after that round (re-running only the evaluation of the same model), so it never aggregates
  the round again;
- a sum served back to the clients *before* the coordinator can read it: the CKKS encrypted sum at
  ``CKKS_DECRYPT``, which every contributor decrypts. Such stages are :data:`RELEASE_STAGES`.
  Before one opens, :class:`ReleaseJournal` records durably (``releases.json``, fsync'd, atomic)
  the round, attempt and contributor set; a later attempt of the same round -- after a failed
  decryption or a restart -- may release again only over exactly the same set (with unchanged
  inputs it is the same sum, so nothing new is learnt). A different set is refused with
  :func:`refusal`, and the engine retries, waiting for those clients, until it aborts.

Assumptions: the contributor set of a release stage is the set of clients the stage is opened
for (``ServerMode.expected(stage)``; for CKKS the clients whose encrypted input is in the sum);
``releases.json`` and the checkpoints live on storage that honours fsync. Not covered here: a
coordinator that is itself curious sees the secagg sum at unmasking, in memory; if it dies before
the checkpoint, the next attempt is a second sum it sees -- safe only because clients retrain
with fresh noise for a new attempt (:mod:`fedcore.client`), and charged to the clients' ledgers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import atomic_write

log = logging.getLogger(__name__)

#: mode stages whose tasks hand an aggregate (encrypted or not) to clients
RELEASE_STAGES = frozenset({Stage.CKKS_DECRYPT})


@dataclass(frozen=True)
class Release:
    round: int
    stage: str
    contributors: tuple[str, ...]
    attempts: tuple[int, ...]


def refusal(prior: Release, round_: int, contributors: frozenset[str]) -> str | None:
    """Why releasing round ``round_``'s aggregate over ``contributors`` is refused, or None."""
    if prior.round != round_ or set(prior.contributors) == set(contributors):
        return None
    return (
        f"round {round_}: an aggregate over {', '.join(prior.contributors)} was already released at "
        f"{prior.stage} (attempt {', '.join(map(str, prior.attempts))}); releasing another over "
        f"{', '.join(sorted(contributors)) or 'nobody'} would reveal the difference of the two sets' "
        f"updates, so this attempt needs exactly the first set"
    )


class ReleaseJournal:
    """``run_dir/releases.json``: the releases of rounds whose result is not yet checkpointed."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "releases.json"
        self.entries: dict[int, Release] = self._load()

    def _load(self) -> dict[int, Release]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # refusing to start is safer than forgetting a release: the operator must look
            raise RuntimeError(
                f"{self.path} cannot be read ({exc}); it records aggregates already released, "
                f"so the coordinator will not start without it"
            ) from None
        return {
            int(k): Release(int(k), str(v["stage"]), tuple(v["contributors"]), tuple(int(a) for a in v["attempts"]))
            for k, v in data.items()
        }

    def _write(self) -> None:
        data = {
            str(r): {"stage": e.stage, "contributors": list(e.contributors), "attempts": list(e.attempts)}
            for r, e in sorted(self.entries.items())
        }
        atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())

    def prior(self, round_: int) -> Release | None:
        return self.entries.get(round_)

    def admit(self, round_: int, attempt: int, stage: Stage, contributors: frozenset[str]) -> str | None:
        """Record (durably, before returning) the release of round ``round_``'s aggregate at
        ``stage``; or return why it is refused (nothing recorded)."""
        prior = self.entries.get(round_)
        if prior is not None:
            why = refusal(prior, round_, contributors)
            if why:
                return why
            attempts = tuple(sorted(set(prior.attempts) | {attempt}))
        else:
            attempts = (attempt,)
        self.entries[round_] = Release(round_, Stage(stage).name, tuple(sorted(contributors)), attempts)
        self._write()
        return None

    def forget_before(self, round_: int, keep_zero: bool) -> None:
        """Drop entries of rounds whose result is checkpointed (those < ``round_``; round 0 kept
        while ``keep_zero``, i.e. its statistics are not yet checkpointed)."""
        stale = [r for r in self.entries if r < round_ and not (r == 0 and keep_zero)]
        if stale:
            for r in stale:
                del self.entries[r]
            self._write()
