"""Differential privacy for fedcore clients and aggregation.

Modules (import what you need; this package imports nothing heavy on its own):

- :mod:`.config`       ``PrivacyConfig`` (validated, frozen) and ``PrivacyConfigError``
- :mod:`.plan`         ``plan_privacy(config, n)`` -> ``PrivacyPlan`` (delta, q, derived noise)
- :mod:`.accounting`   pure RDP / PRV accounting: ``epsilon``, ``account``, ``derive_noise_multiplier``
- :mod:`.ledger`       ``PrivacyLedger`` (atomic JSON, cumulative, per-round idempotent), ``BudgetExhausted``
- :mod:`.opacus_train` ``dp_train(...)`` -> ``TrainStats``: DP-SGD with Poisson sampling for any model
- :mod:`.report`       ``privacy_report(run_dir)``; :mod:`.commands` ``register(subparsers)``
- :mod:`.central`      DP-FedAvg (client-level): ``clip_update``, ``add_gaussian_noise``, ``DPFedAvg``
- :mod:`.secagg_dp`    distributed DP inside SecAgg+: settings, noise per fixed-point scale, accountant
- :mod:`.coordinator_dp` ``CoordinatorPrivacy``: the coordinator's client-level DP noise and records
- :mod:`.discrete`     discrete Gaussian / Laplace samplers (integer noise)
- :mod:`.distributed`  distributed discrete Gaussian for secure aggregation: scales and accounting
- :mod:`.rng`          ``SecureRNG`` (AES-256-CTR CSPRNG)
"""
