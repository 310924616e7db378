"""SecAgg+ stages, the legal transitions between them, and the mode's settings.

Both sides import the stages from here. A client moves IDLE -> ADVERTISE_KEYS -> SHARE_KEYS ->
MASKED_INPUT -> UNMASK within one (round, attempt); a repeated UNMASK is legal (a lost reply) but
goes through the same "never both shares" guard. A new (round, attempt) starts again at
ADVERTISE_KEYS with fresh keys; anything else is refused.

Settings (the ``[aggregation.secagg]`` table; the server reads them merged with ``ctx.settings``,
the client as floors for what the server may ask):

========================  ===========  =============================================================
key                       default      meaning
========================  ===========  =============================================================
``k``                     ``"auto"``   masking-graph degree: ``"all"`` (complete graph, original
                                       SecAgg), ``"auto"`` (the smallest even k whose failure bound
                                       for ``corrupt_fraction`` / ``dropout_fraction`` is <= 2^-40,
                                       :mod:`.bounds`; complete when none is), or an even integer
                                       (refused unless it meets the same bound; >= n - 1 = complete)
``corrupt_fraction``      ``1/3``      gamma: the fraction of clients that may collude with the
                                       server (a coalition of floor(gamma n), at most T - 1)
``dropout_fraction``      ``1/3``      delta: the fraction of clients that may drop out of a round
``threshold``             ``0.5``      T, the fewest survivors of any stage: a value in (0, 1] is a
                                       fraction of the participants (raised to a strict majority),
                                       an integer > 1 an absolute count (must exceed half of them)
``min_clients``           ``3``        T is never below this; rounds with fewer participants abort
``clip``                  ``1.0``      c: each value is clipped to [-c, c] before quantisation
``bits``                  ``"auto"``   ring Z_2^bits: 32, 64, or ``"auto"`` (32 unless that leaves
                                       fewer than ``min_frac_bits`` fractional bits)
``frac_bits``             ``"auto"``   f: the largest that cannot overflow, or a fixed integer
``min_frac_bits``         ``16``       the precision below which ``"auto"`` bits switches to 64
``noise_sigma``           ``0.0``      per-client discrete noise std in integer units (a floor; raw)
``distributed_dp``        absent       ``{noise_multiplier, clip_norm, delta}``: client-level DP of
                                       training rounds; each client clips its update to L2
                                       ``clip_norm`` and adds noise scaled for the threshold T
                                       (:mod:`fedcore.dp.secagg_dp`); weights are capped at 1;
                                       the quantiser's bound is ``clip_norm`` (nothing is clipped
                                       after the L2 clip) and no clip count is sent in any noisy
                                       round: it would be a data-dependent sum without noise
``stats_noise``           ``"auto"``   round 0's statistics noise: ``"auto"`` (on when the
                                       federation has DP: ``distributed_dp`` here, or the
                                       coordinator's ``federation_dp = true``), ``true``, ``false``
``stats_epsilon``         ``1.0``      epsilon of the round-0 release (sample level) when it is on
``stats_delta``           ``1e-5``     its delta
``stats_sensitivity``     ``0``        the L2 sensitivity the workload declares for its statistics
                                       vector, in counts (0: sqrt(L), each sample changing each
                                       count by at most 1)
``stats_noise_sigma``     ``0.0``      sigma_c in counts per client, overriding ``stats_epsilon``
                                       when > 0 (sigma_total = sigma_c sqrt(T))
``federation_dp``         ``false``    set by the coordinator when any DP is on in the federation
========================  ===========  =============================================================

:func:`validate_settings` lists every problem of a table at once (unknown keys included); the
coordinator's config loader calls it through ``SecAggServer.validate_settings``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeGuard

from fedcore.common.errors import ConfigError
from fedcore.common.stages import Stage
from fedcore.dp.secagg_dp import DistributedDP, parse_distributed_dp  # secagg uses dp, never the other way round

if TYPE_CHECKING:
    from fedcore.secagg.bounds import GraphPlan


class SecAggStage(enum.StrEnum):
    IDLE = "idle"  # no round started (or a new (round, attempt) is due)
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    UNMASK = "unmask"
    DONE = "done"  # server only: the sum is known
    ABORTED = "aborted"  # this (round, attempt) ended in an abort; nothing more is done

    @property
    def wire(self) -> Stage:
        return _TO_WIRE[self]

    @classmethod
    def from_wire(cls, stage: Stage | int) -> SecAggStage:
        """The SecAgg stage of a wire stage; ValueError for any stage that is not SecAgg's."""
        try:
            return _FROM_WIRE[Stage(stage)]
        except (KeyError, ValueError):
            raise ValueError(
                f"stage {stage!r} is not a SecAgg stage (expected one of {', '.join(s.name for s in _FROM_WIRE)})"
            ) from None


ROUND_STAGES = (SecAggStage.ADVERTISE_KEYS, SecAggStage.SHARE_KEYS, SecAggStage.MASKED_INPUT, SecAggStage.UNMASK)
_TO_WIRE = {
    SecAggStage.ADVERTISE_KEYS: Stage.SECAGG_ADVERTISE_KEYS,
    SecAggStage.SHARE_KEYS: Stage.SECAGG_SHARE_KEYS,
    SecAggStage.MASKED_INPUT: Stage.SECAGG_MASKED_INPUT,
    SecAggStage.UNMASK: Stage.SECAGG_UNMASK,
}
_FROM_WIRE = {v: k for k, v in _TO_WIRE.items()}

#: (from, to) stage changes a client accepts within one (round, attempt).
CLIENT_TRANSITIONS: frozenset[tuple[SecAggStage, SecAggStage]] = frozenset(
    {
        (SecAggStage.IDLE, SecAggStage.ADVERTISE_KEYS),
        (SecAggStage.ADVERTISE_KEYS, SecAggStage.SHARE_KEYS),
        (SecAggStage.SHARE_KEYS, SecAggStage.MASKED_INPUT),
        (SecAggStage.MASKED_INPUT, SecAggStage.UNMASK),
        (SecAggStage.UNMASK, SecAggStage.UNMASK),
    }
)

#: (from, to) stage changes of the server's round (closing a stage moves to the next one); any
#: stage may also move to ABORTED.
SERVER_TRANSITIONS: frozenset[tuple[SecAggStage, SecAggStage]] = frozenset(
    {
        (SecAggStage.IDLE, SecAggStage.ADVERTISE_KEYS),
        (SecAggStage.ADVERTISE_KEYS, SecAggStage.SHARE_KEYS),
        (SecAggStage.SHARE_KEYS, SecAggStage.MASKED_INPUT),
        (SecAggStage.MASKED_INPUT, SecAggStage.UNMASK),
        (SecAggStage.UNMASK, SecAggStage.DONE),
    }
)


def is_legal(table: frozenset[tuple[SecAggStage, SecAggStage]], current: SecAggStage, new: SecAggStage) -> bool:
    return (current, new) in table


@dataclass(frozen=True)
class SecAggSettings:
    k: int | str = "auto"
    threshold: float | int = 0.5
    min_clients: int = 3
    clip: float = 1.0
    bits: int | str = "auto"
    frac_bits: int | str = "auto"
    min_frac_bits: int = 16
    noise_sigma: float = 0.0
    distributed_dp: Mapping[str, Any] | None = None
    stats_noise_sigma: float = 0.0
    corrupt_fraction: float = 1 / 3
    dropout_fraction: float = 1 / 3
    stats_noise: bool | str = "auto"
    stats_epsilon: float = 1.0
    stats_delta: float = 1e-5
    stats_sensitivity: float = 0.0
    federation_dp: bool = False

    @property
    def stats_noise_on(self) -> bool:
        """Whether round 0's statistics get noise (``stats_noise``; "auto": when DP is on anywhere)."""
        if self.stats_noise == "auto":
            return self.distributed_dp not in (None, {}) or bool(self.federation_dp) or self.stats_noise_sigma > 0
        return bool(self.stats_noise)

    @property
    def dp(self) -> DistributedDP | None:
        """The parsed ``distributed_dp`` settings (:class:`fedcore.dp.secagg_dp.DistributedDP`) or None."""
        return parse_distributed_dp(self.distributed_dp)[0]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], source: str = "secagg settings") -> SecAggSettings:
        """Read and validate the keys this mode knows (others are ignored); ConfigError lists every
        problem at once."""
        values = {f.name: settings[f.name] for f in fields(cls) if f.name in settings}
        for key in ("k", "threshold", "min_clients", "bits", "frac_bits", "min_frac_bits"):
            v = values.get(key)  # numbers that crossed a google.protobuf.Struct arrive as floats
            if isinstance(v, float) and v.is_integer() and (key != "threshold" or v > 1):
                values[key] = int(v)
        s = cls(**values)
        problems = []
        if not (s.k in ("auto", "all") or (_is_int(s.k) and s.k >= 2)):
            problems.append(f"k must be 'auto', 'all' or an integer >= 2 (got {s.k!r})")
        if _is_int(s.threshold) and s.threshold == 1:
            values["threshold"] = 1.0  # "all of them"
        elif _is_int(s.threshold):
            if s.threshold < 2:
                problems.append(f"an absolute threshold must be >= 2 (got {s.threshold})")
        elif not (isinstance(s.threshold, float) and 0 < s.threshold <= 1):
            problems.append(f"threshold must be a fraction in (0, 1] or an integer count (got {s.threshold!r})")
        if not (_is_int(s.min_clients) and s.min_clients >= 3):
            problems.append(f"min_clients must be an integer >= 3 (got {s.min_clients!r})")
        if not (_is_num(s.clip) and math.isfinite(s.clip) and s.clip > 0):
            problems.append(f"clip must be a positive finite number (got {s.clip!r})")
        if s.bits not in ("auto", 32, 64):
            problems.append(f"bits must be 'auto', 32 or 64 (got {s.bits!r})")
        if not (s.frac_bits == "auto" or (_is_int(s.frac_bits) and 0 <= s.frac_bits <= 40)):
            problems.append(f"frac_bits must be 'auto' or an integer in [0, 40] (got {s.frac_bits!r})")
        if not (_is_int(s.min_frac_bits) and 0 <= s.min_frac_bits <= 40):
            problems.append(f"min_frac_bits must be an integer in [0, 40] (got {s.min_frac_bits!r})")
        if not (_is_num(s.noise_sigma) and math.isfinite(s.noise_sigma) and s.noise_sigma >= 0):
            problems.append(f"noise_sigma must be a finite number >= 0 (got {s.noise_sigma!r})")
        if not (_is_num(s.stats_noise_sigma) and math.isfinite(s.stats_noise_sigma) and s.stats_noise_sigma >= 0):
            problems.append(f"stats_noise_sigma must be a finite number >= 0 (got {s.stats_noise_sigma!r})")
        for key in ("corrupt_fraction", "dropout_fraction"):
            v = getattr(s, key)
            if not (_is_num(v) and 0 <= v < 1):
                problems.append(f"{key} must be a fraction in [0, 1) (got {v!r})")
        if _is_num(s.corrupt_fraction) and _is_num(s.dropout_fraction) and s.corrupt_fraction + s.dropout_fraction >= 1:
            problems.append(
                f"corrupt_fraction + dropout_fraction must be < 1 (got {s.corrupt_fraction} + {s.dropout_fraction})"
            )
        if (
            _is_num(s.corrupt_fraction)
            and isinstance(s.threshold, float)
            and 0 < s.threshold <= 1
            and s.corrupt_fraction >= max(s.threshold, 0.5)
        ):
            problems.append(
                f"corrupt_fraction {s.corrupt_fraction} reaches the threshold (a fraction {s.threshold}, "
                f"never below a majority): such a coalition alone could unmask every client"
            )
        if s.stats_noise not in ("auto", True, False):
            problems.append(f"stats_noise must be 'auto', true or false (got {s.stats_noise!r})")
        if not (_is_num(s.stats_epsilon) and math.isfinite(s.stats_epsilon) and s.stats_epsilon > 0):
            problems.append(f"stats_epsilon must be a finite number > 0 (got {s.stats_epsilon!r})")
        if not (_is_num(s.stats_delta) and 0 < s.stats_delta < 1):
            problems.append(f"stats_delta must be in (0, 1) (got {s.stats_delta!r})")
        if not (_is_num(s.stats_sensitivity) and math.isfinite(s.stats_sensitivity) and s.stats_sensitivity >= 0):
            problems.append(f"stats_sensitivity must be a finite number >= 0 (got {s.stats_sensitivity!r})")
        if not isinstance(s.federation_dp, bool):
            problems.append(f"federation_dp must be true or false (got {s.federation_dp!r})")
        problems += parse_distributed_dp(s.distributed_dp)[1]
        if problems:
            raise ConfigError(problems, source)
        floats = (
            "clip",
            "noise_sigma",
            "stats_noise_sigma",
            "corrupt_fraction",
            "dropout_fraction",
            "stats_epsilon",
            "stats_delta",
            "stats_sensitivity",
        )
        return cls(**{**values, **{key: float(getattr(s, key)) for key in floats}})


def validate_settings(settings: Mapping[str, Any]) -> list[str]:
    """Every problem of a ``[secagg]`` table, unknown keys included (empty list: valid)."""
    if not isinstance(settings, Mapping):
        return [f"expected a table of settings (got {type(settings).__name__})"]
    known = [f.name for f in fields(SecAggSettings)]
    problems = [f"unknown key {key!r} (expected one of: {', '.join(known)})" for key in settings if key not in known]
    try:
        SecAggSettings.from_mapping(settings)
    except ConfigError as exc:
        problems += exc.problems
    except TypeError as exc:
        problems.append(str(exc))
    return problems


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def resolve_threshold(threshold: float, n: int, min_clients: int) -> int:
    """T for ``n`` participants: ValueError when the setting or ``n`` cannot give a safe round.

    A fraction gives max(ceil(fraction * n), floor(n / 2) + 1, min_clients); an absolute count
    must itself exceed n / 2 and is raised to min_clients. T may not exceed n.
    """
    if _is_int(threshold):
        t = int(threshold)
        if 2 * t <= n:
            raise ValueError(f"threshold {t} is not more than half of the {n} participants")
    else:
        t = max(math.ceil(float(threshold) * n - 1e-9), n // 2 + 1)
    t = max(t, min_clients)
    if t > n:
        raise ValueError(
            f"{n} participants are fewer than the threshold {t} (min_clients {min_clients}); "
            f"with so few clients each could learn the others' inputs"
        )
    return t


def graph_plan(config: SecAggSettings, n: int, t: int, k: int | str | None = None) -> GraphPlan:
    """The masking graph and share threshold (:class:`~fedcore.secagg.bounds.GraphPlan`) of a round
    of ``n`` participants with survivor threshold ``t``: ``k`` (default: the setting's) checked
    against the 2^-40 bound of :mod:`fedcore.secagg.bounds` for the setting's corruption and dropout
    fractions. ValueError when the settings cannot meet it."""
    from fedcore.secagg.bounds import plan
    from fedcore.secagg.graph import resolve_degree

    k = config.k if k is None else k
    if k != "auto":
        k = resolve_degree(k, n)
        k = "all" if k >= n - 1 else k
    return plan(n, t, config.corrupt_fraction, config.dropout_fraction, k)
