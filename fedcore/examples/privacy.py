"""A client's sample-level DP-SGD state for the example workload: config, plan, persisted ledger.

The example workload (:mod:`fedcore.examples.softmax`) trains with DP-SGD
(:func:`fedcore.dp.opacus_train.dp_train`) when ``config["privacy"]`` (the coordinator's defaults
merged with the client's own ``[privacy]`` table) is non-empty and not ``enabled = false``. Missing
``planned_rounds``, ``local_epochs`` and ``batch_size`` default to the TrainTask's ``rounds``,
``epochs`` and ``batch_size``. The noise multiplier is planned once (before the first round) for
the whole run and the ledger lives at ``[privacy] ledger`` or ``WORKDIR/privacy_ledger.json``
(checked against the workdir's evidence of earlier training), so spending is cumulative across
rounds, attempts, client restarts and the federations that share the ledger.

A table like ``{target_epsilon = 0.5, noise_multiplier = 1.0}`` (a fixed noise that the target
cannot cover for the whole run) makes a client stop when its budget runs out: the trainer
turns the ledger's refusal into :class:`fedcore.common.workload.BudgetExhausted`, which the client
daemon reports to the coordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcore.common.workload import PrivacyState

if TYPE_CHECKING:  # at run time prepare() imports them, on a client's first DP round
    from fedcore.dp.config import PrivacyConfig
    from fedcore.dp.ledger import PrivacyLedger
    from fedcore.dp.plan import PrivacyPlan

log = logging.getLogger(__name__)


def wants_dp(config: Mapping[str, Any]) -> bool:
    """True when ``config["privacy"]`` asks for DP-SGD (a non-empty table, not ``enabled = false``)."""
    table = config.get("privacy") or {}
    return bool(table) and table.get("enabled", True) is not False


class ClientPrivacy:
    """Parsed config, plan and ledger of one client (built lazily on its first DP round)."""

    def __init__(self, client_id: str, workdir: Path | None, num_examples: int):
        self.client_id = client_id
        self.workdir = Path(workdir or ".")
        self.path = self.workdir / "privacy_ledger.json"
        self.num_examples = num_examples
        self._table: dict[str, Any] | None = None
        self.config: PrivacyConfig | None = None
        self.plan: PrivacyPlan | None = None
        self.ledger: PrivacyLedger | None = None

    def prepare(self, config: Mapping[str, Any]):
        """(PrivacyConfig, PrivacyPlan, PrivacyLedger) for this TrainTask config (planned once)."""
        from fedcore.dp.config import PrivacyConfig
        from fedcore.dp.plan import plan_and_open

        table = dict(config.get("privacy") or {})
        table.setdefault("planned_rounds", int(config.get("rounds", 1)))
        table.setdefault("local_epochs", int(config.get("epochs", 1)))
        table.setdefault("batch_size", int(config.get("batch_size", 32)))
        if table != self._table:  # parse (and warn about secure_rng) once per table
            self.config = PrivacyConfig.from_dict(table, source=f"{self.client_id} [privacy]")
            self._table = table
            self.path = self.config.ledger_path(self.workdir)
            self.plan, self.ledger = plan_and_open(self.config, self.num_examples, self.path, workdir=self.workdir)
            log.info(
                "client %s: %s; ledger %s holds epsilon %.4g",
                self.client_id,
                self.plan.summary(),
                self.path,
                self.ledger.spent(),
            )
        return self.config, self.plan, self.ledger

    def state(self, exhausted: bool = False) -> PrivacyState:
        """The cumulative state reported to the coordinator (epsilon from the ledger)."""
        if self.plan is None or self.ledger is None:
            return PrivacyState(enabled=False)
        result = self.ledger.result()
        return PrivacyState(
            enabled=True,
            epsilon=float(result.epsilon),
            delta=float(result.delta),
            accountant=result.accountant,
            steps=int(self.ledger.steps),
            noise_multiplier=float(self.plan.noise_multiplier),
            target_epsilon=float(self.plan.target_epsilon or 0.0),
            exhausted=exhausted or self.ledger.exhausted,
        )
