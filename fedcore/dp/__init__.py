"""Differential privacy for fedcore clients and aggregation.

Modules (import what you need; this package imports nothing heavy on its own):

- :mod:`.config`       ``PrivacyConfig`` (validated, frozen) and ``PrivacyConfigError``
- :mod:`.plan`         ``plan_privacy(config, n)`` -> ``PrivacyPlan`` (delta, q, derived noise, RDP cross-check)
- :mod:`.accounting`   pure PRV (default) / RDP / PLD-fallback accounting: ``account``, ``derive_noise_multiplier``
- :mod:`.ledger`       ``PrivacyLedger`` (atomic, append-only, shared under flock), ``ChargeKey``, ``BudgetExhausted``
- :mod:`.ledger_format` the versioned JSON format (v2; v1 migrated); :mod:`.ledger_guard` no silent restart at zero
- :mod:`.statistics`   ``statistics_epsilon(sigma, sensitivity, delta)``: one Gaussian release (round-0 statistics)
- :mod:`.opacus_train` ``dp_train(...)`` -> ``TrainStats``: DP-SGD with Poisson sampling for any model
- :mod:`.fused`        ``FusedClipper``: per-sample clipped gradient sums in one backward (dp_train's default path)
- :mod:`.report`       ``privacy_report(run_dir)``; :mod:`.commands` ``register(subparsers)`` (report, plan, new-budget)
- :mod:`.central`      DP-FedAvg (client-level, q = 1 unless secret Poisson sampling): ``DPFedAvg``,
                       ``clients_total_problems``, ``poisson_select``
- :mod:`.secagg_dp`    distributed DP inside SecAgg+: settings, noise per fixed-point scale, accountant
- :mod:`.coordinator_dp` ``CoordinatorPrivacy``: the coordinator's client-level DP noise and records
- :mod:`.discrete`     discrete Gaussian / Laplace samplers (integer noise)
- :mod:`.distributed`  distributed discrete Gaussian for secure aggregation: scales and accounting
- :mod:`.rng`          ``SecureRNG`` (AES-256-CTR CSPRNG)
"""
