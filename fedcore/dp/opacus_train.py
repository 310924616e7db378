"""Workload-agnostic local training with DP-SGD (Opacus), charged to the client's ledger.

:func:`dp_train` trains any single-forward ``nn.Module`` on in-memory tensors:

- Poisson sampling as Opacus's ``DPDataLoader`` does it: each record joins each step's batch
  with probability q = 1 / ceil(n / batch_size); exactly ceil(n / batch_size) steps make an
  epoch (see :func:`_poisson_batches`).
- Per-sample gradients clipped to ``max_grad_norm`` and summed; Gaussian noise N(0, (sigma C)^2)
  is added; the sum is divided by the expected batch size -- the arithmetic of Opacus's
  ``DPOptimizer``. By default (``grad_sample_mode="auto"``) the clipped sum comes from
  :class:`~fedcore.dp.fused.FusedClipper` (ghost norms and one flat clipped sum, no parameter
  gradients from autograd, one noise draw for all parameters); models with a layer it does not
  support go through Opacus's ``GradSampleModule`` + ``DPOptimizer`` (``hooks``), as do the
  explicit modes ``hooks``, ``ew`` and ``functorch``. Both are checked against a per-sample loop.
- Empty Poisson batches are real steps of the mechanism: the update is noise only. Skipping them
  would reveal that the batch was empty, which the accounting does not cover. :func:`dp_train`
  takes the noisy step without a forward pass (Opacus modes: zero-length per-sample gradients), so
  it works in any ``grad_sample_mode`` (the ``ew`` mode fails on empty inputs).
- Before training, the ledger's :meth:`~fedcore.dp.ledger.PrivacyLedger.check` refuses a round
  that would pass the budget (:class:`~fedcore.dp.ledger.BudgetExhausted`); afterwards the steps
  taken are *appended* to the ledger under ``charge_key`` (federation, run, round, attempt) —
  also when training fails midway: those steps happened. Nothing is ever replaced: a re-run of
  a round is a new release and is charged again.
- Without DP (``privacy.enabled = false``) the batch order comes from ``seed`` when given (the
  client daemon passes a fresh one per attempt) and the result is not private.
- ``secure_rng``: Opacus's own secure mode needs ``torchcsprng``, which has had no release since
  2021 and does not build against current torch. fedcore's secure mode instead draws the Poisson
  masks and the Gaussian noise from :class:`~fedcore.dp.rng.SecureRNG` (AES-256-CTR), and, like
  Opacus's secure mode, sums four Gaussians per coordinate (Holohan et al. 2021, arXiv
  2107.10138, Sec. 5.1) against floating-point attacks.

The module is trained in place and left unwrapped: no Opacus hooks or ``grad_sample``
attributes remain, and ``state_dict()`` keys carry no ``_module.`` prefix.

``loss_fn(outputs, *targets) -> scalar``: ``outputs = module(*tensors[:num_inputs])`` and
``targets = tensors[num_inputs:]``; it must *average* over the batch (``reduction="mean"``),
which Opacus's "mean" loss reduction assumes. The returned training loss is computed on private
data without noise: keep it in local logs unless the leak is acceptable.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .config import PrivacyConfig
from .fused import FusedClipper, unsupported
from .ledger import ChargeKey, PrivacyLedger
from .plan import PrivacyPlan, plan_privacy
from .rng import SecureRNG

__all__ = ["GRAD_SAMPLE_MODES", "StepInfo", "TrainStats", "dp_train", "resolve_device"]

#: ``grad_sample_mode`` values: ``auto`` (fused where the module allows, else hooks), ``fused``
#: (:mod:`fedcore.dp.fused`), and Opacus's own ``hooks``, ``ew``, ``functorch``
GRAD_SAMPLE_MODES = ("auto", "fused", "hooks", "ew", "functorch")

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class TrainStats:
    """What one call of :func:`dp_train` did. Privacy fields are ``None`` without DP."""

    steps: int  # optimiser steps (including noise-only steps on empty batches)
    epsilon: float | None  # cumulative epsilon of the client after this training
    delta: float | None
    noise_multiplier: float | None
    loss: float  # mean training loss over the non-empty batches (nan if none)
    num_examples: int  # n, the client's training records
    accountant: str | None = None  # accountant that produced epsilon (after any PRV fallback)
    sample_rate: float | None = None
    empty_batches: int = 0


@dataclass(frozen=True)
class StepInfo:
    """Passed to ``on_step`` after every optimiser step."""

    epoch: int
    step: int  # 1-based, over the whole call
    batch_size: int  # records in this (Poisson) batch; 0 for a noise-only step
    loss: float | None  # None for an empty batch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else as ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def dp_train(
    module: nn.Module,
    loss_fn: LossFn,
    tensors: Sequence[torch.Tensor],
    *,
    privacy: PrivacyConfig,
    ledger: PrivacyLedger | None,
    round: int,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 0.05,
    optimizer_factory: OptimizerFactory | None = None,
    device: str | torch.device = "auto",
    on_step: Callable[[StepInfo], None] | None = None,
    plan: PrivacyPlan | None = None,
    num_inputs: int = 1,
    grad_sample_mode: str = "auto",
    charge_key: ChargeKey | None = None,
    seed: int | None = None,
) -> TrainStats:
    """Train ``module`` in place for ``epochs`` local epochs, with DP-SGD if ``privacy.enabled``.

    Args:
        module: the model; single-forward, Opacus-compatible (no BatchNorm; see FACTS §3).
        loss_fn: ``loss_fn(outputs, *targets)`` -> scalar batch mean (see module docstring).
        tensors: ``(inputs..., targets...)``, all with the same first dimension n.
        privacy: the client's :class:`PrivacyConfig`.
        ledger: the client's ledger (required with DP; ignored without).
        round: round number (part of the ledger key; every call is charged, nothing is replaced).
        epochs: local epochs (default ``privacy.local_epochs``).
        batch_size: expected batch size (default ``privacy.batch_size``).
        lr: learning rate of the default optimiser (SGD); ignored with ``optimizer_factory``.
        optimizer_factory: ``params -> torch.optim.Optimizer``.
        device: "auto", "cpu", "cuda", ...; the module goes back to its own device afterwards.
        on_step: callback with a :class:`StepInfo` after each step.
        plan: a :class:`PrivacyPlan` from :func:`plan_privacy` (computed here if omitted; pass it
            to avoid re-deriving the noise multiplier each round).
        num_inputs: how many leading tensors go to ``module(...)``.
        grad_sample_mode: how per-sample gradients are clipped (:data:`GRAD_SAMPLE_MODES`): "auto"
            (default) takes "fused" (:mod:`fedcore.dp.fused`: no Opacus optimizer, ghost norms,
            one flat clipped sum, one noise draw) where every trainable layer is supported, else
            Opacus "hooks"; "ew" and "functorch" are Opacus's other modes.
        charge_key: the ledger key of this training (``ChargeKey.from_task(config, round)`` in a
            Trainer; default: round ``round`` of an unnamed run). Its round must equal ``round``.
        seed: without DP, the seed of the batch order (default: torch's global generator).

    Raises:
        BudgetExhausted: this round would take the client past its target epsilon.
        ValueError: inconsistent tensors, ledger or plan.
    """
    tensors = tuple(tensors)
    n = _check_tensors(tensors, num_inputs)
    epochs = privacy.local_epochs if epochs is None else epochs
    batch_size = privacy.batch_size if batch_size is None else batch_size
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
    factory = optimizer_factory or (lambda params: torch.optim.SGD(params, lr=lr))
    target = resolve_device(device)
    home = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.to(target)
    module.train()
    try:
        if not privacy.enabled:
            return _train_plain(
                module, loss_fn, tensors, n, epochs, batch_size, factory, target, on_step, num_inputs, seed
            )
        if ledger is None:
            raise ValueError("dp_train: a PrivacyLedger is required when privacy.enabled is true")
        plan = plan or plan_privacy(privacy, n)
        _check_plan(plan, ledger, n)
        return _train_dp(
            module,
            loss_fn,
            tensors,
            n,
            epochs,
            batch_size,
            factory,
            target,
            on_step,
            num_inputs,
            privacy,
            plan,
            ledger,
            charge_key or ChargeKey(round=round),
            grad_sample_mode,
        )
    finally:
        module.to(home)


def _check_tensors(tensors: tuple[torch.Tensor, ...], num_inputs: int) -> int:
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError(
            f"tensors must be a non-empty tuple of torch.Tensor (got {[type(t).__name__ for t in tensors]})"
        )
    sizes = [t.shape[0] if t.dim() else None for t in tensors]
    if sizes[0] is None or sizes[0] < 1 or any(s != sizes[0] for s in sizes):
        raise ValueError(f"tensors must share a first dimension n >= 1 (got first dimensions {sizes})")
    if not 1 <= num_inputs <= len(tensors):
        raise ValueError(f"num_inputs must be in [1, {len(tensors)}] (got {num_inputs})")
    return int(sizes[0])


def _check_plan(plan: PrivacyPlan, ledger: PrivacyLedger, n: int) -> None:
    problems = []
    if plan.num_examples != n:
        problems.append(f"plan is for n={plan.num_examples} records but {n} were given")
    if ledger.delta != plan.delta:
        problems.append(f"ledger delta {ledger.delta:g} != plan delta {plan.delta:g}")
    if ledger.accountant != plan.accountant:
        problems.append(f"ledger accountant {ledger.accountant!r} != plan accountant {plan.accountant!r}")
    if ledger.target_epsilon != plan.target_epsilon:
        problems.append(f"ledger target_epsilon {ledger.target_epsilon} != plan target_epsilon {plan.target_epsilon}")
    if problems:
        raise ValueError("dp_train: " + "; ".join(problems) + " (open the ledger with plan.open_ledger(path))")


def _step(module, loss_fn, batch, num_inputs, optimizer) -> float:
    outputs = module(*batch[:num_inputs])
    loss = loss_fn(outputs, *batch[num_inputs:])
    _check_loss(loss)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _check_loss(loss) -> None:
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar tensor (got {getattr(loss, 'shape', type(loss))})")


def _train_plain(
    module, loss_fn, tensors, n, epochs, batch_size, factory, device, on_step, num_inputs, seed
) -> TrainStats:
    optimizer = factory(module.parameters())
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    steps, total_loss, seen = 0, 0.0, 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = tuple(t[idx].to(device) for t in tensors)
            loss = _step(module, loss_fn, batch, num_inputs, optimizer)
            steps += 1
            total_loss += loss * len(idx)
            seen += len(idx)
            if on_step:
                on_step(StepInfo(epoch, steps, len(idx), loss))
    return TrainStats(
        steps=steps, epsilon=None, delta=None, noise_multiplier=None, loss=total_loss / seen, num_examples=n
    )


def _train_dp(
    module,
    loss_fn,
    tensors,
    n,
    epochs,
    batch_size,
    factory,
    device,
    on_step,
    num_inputs,
    privacy,
    plan,
    ledger,
    key,
    grad_sample_mode,
) -> TrainStats:
    round = key.round
    steps_per_epoch = math.ceil(n / batch_size)
    sample_rate = 1.0 / steps_per_epoch
    planned = epochs * steps_per_epoch
    sigma, clip = plan.noise_multiplier, plan.max_grad_norm
    mode = _resolve_mode(module, grad_sample_mode)  # refuses BatchNorm & co. before the budget check
    ledger.check(round, sample_rate, sigma, planned)  # raises BudgetExhausted

    rng = SecureRNG() if privacy.secure_rng else None
    uniform: Callable[[int], torch.Tensor] = torch.rand  # what DPDataLoader's sampler draws
    if rng is not None:
        uniform = lambda size: torch.from_numpy(rng.random(size))

    def batches() -> Iterator[tuple[torch.Tensor, ...]]:
        return _poisson_batches(tensors, sample_rate, steps_per_epoch, uniform)

    progress = _Progress()
    if mode == "fused":
        expected = int(n * sample_rate)  # Opacus's expected batch size (PrivacyEngine.make_private)
        clipper = FusedClipper(module, max_grad_norm=clip)
        try:
            _run_fused_epochs(
                clipper,
                module,
                loss_fn,
                factory(module.parameters()),
                batches,
                epochs,
                device,
                num_inputs,
                on_step,
                progress,
                sigma * clip,
                expected,
                rng,
            )
        finally:
            clipper.close()
            _strip_opacus_state(module)
            if progress.steps:
                ledger.charge(round, sample_rate, sigma, progress.steps, key=key)
    else:
        gsm, dp_optimizer = _make_private(module, factory, tensors, batch_size, sigma, clip, sample_rate, mode, rng)
        try:
            _run_dp_epochs(gsm, module, loss_fn, dp_optimizer, batches, epochs, device, num_inputs, on_step, progress)
        finally:
            gsm.to_standard_module()  # remove hooks; the module object itself stays (trained)
            _strip_opacus_state(module)
            if progress.steps:
                ledger.charge(round, sample_rate, sigma, progress.steps, key=key)
    steps, empty, seen = progress.steps, progress.empty, progress.seen
    result = ledger.result()
    logger.info(
        "%s: %d DP-SGD steps (%d empty, %s), epsilon %.4g (delta %.3g, %s)",
        key.label(),
        steps,
        empty,
        mode,
        result.epsilon,
        result.delta,
        result.accountant,
    )
    return TrainStats(
        steps=steps,
        epsilon=result.epsilon,
        delta=result.delta,
        noise_multiplier=sigma,
        loss=progress.total_loss / seen if seen else float("nan"),
        num_examples=n,
        accountant=result.accountant,
        sample_rate=sample_rate,
        empty_batches=empty,
    )


def _resolve_mode(module: nn.Module, mode: str) -> str:
    """``auto`` -> ``fused`` where :func:`fedcore.dp.fused.unsupported` finds nothing, else ``hooks``."""
    if mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)} (got {mode!r})")
    if mode not in ("auto", "fused"):
        return mode
    ModuleValidator.validate(module, strict=True)  # what make_private refuses (BatchNorm, ...)
    problems = unsupported(module)
    if problems and mode == "fused":
        raise ValueError("grad_sample_mode='fused' cannot train this module: " + "; ".join(problems))
    if problems:
        logger.info("DP-SGD with Opacus hooks (fused clipping does not apply: %s)", "; ".join(problems))
        return "hooks"
    return "fused"


def _make_private(module, factory, tensors, batch_size, sigma, clip, sample_rate, mode, rng):
    """Opacus's GradSampleModule and DPOptimizer (noise from ``rng`` when given)."""
    optimizer = factory(module.parameters())
    with warnings.catch_warnings():
        # fedcore warns about secure_rng itself (PrivacyConfig); Opacus's secure mode is not used
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp", secure_mode=False)
        gsm, dp_optimizer, loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=DataLoader(TensorDataset(*tensors), batch_size=batch_size),
            noise_multiplier=sigma,
            max_grad_norm=clip,
            poisson_sampling=True,
            grad_sample_mode=mode,
        )
    if not (isinstance(loader, DPDataLoader) and loader.sample_rate == sample_rate):
        raise RuntimeError(f"Opacus did not set up Poisson sampling at rate {sample_rate} (got {loader!r})")
    if rng is not None:
        dp_optimizer = _CSPRNGNoiseDPOptimizer(
            optimizer=dp_optimizer.original_optimizer,
            noise_multiplier=sigma,
            max_grad_norm=clip,
            expected_batch_size=dp_optimizer.expected_batch_size,
            loss_reduction="mean",
            rng=rng,
        )
    return gsm, dp_optimizer


def _run_fused_epochs(
    clipper, module, loss_fn, optimizer, batches, epochs, device, num_inputs, on_step, progress, std, expected, rng
) -> None:
    """The DP-SGD loop on :class:`~fedcore.dp.fused.FusedClipper`: clipped sum, noise, / expected batch."""
    flat = clipper.flat
    for epoch in range(1, epochs + 1):
        for batch in batches():
            size = int(batch[0].shape[0])
            loss = None
            if size == 0:  # noise-only step: no forward
                clipper.zero()
                progress.empty += 1
            else:
                batch = tuple(t.to(device) for t in batch)
                out = loss_fn(module(*batch[:num_inputs]), *batch[num_inputs:])
                _check_loss(out)
                clipper.clipped_sum(out)
                loss = float(out.detach())
                progress.total_loss += loss * size
                progress.seen += size
            if rng is not None:  # (z1 + z2 + z3 + z4) / 2 per coordinate, from the CSPRNG, in float64
                flat.add_(rng.normal_sum4(flat.numel(), device=flat.device), alpha=std)
            else:
                flat.add_(torch.normal(0.0, std, size=flat.shape, device=flat.device, dtype=flat.dtype))
            flat.div_(expected)
            clipper.assign_grads()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.steps += 1
            if on_step:
                on_step(StepInfo(epoch, progress.steps, size, loss))


@dataclass
class _Progress:
    steps: int = 0
    empty: int = 0
    seen: int = 0
    total_loss: float = 0.0


def _run_dp_epochs(gsm, module, loss_fn, optimizer, batches, epochs, device, num_inputs, on_step, progress) -> None:
    """The DP-SGD loop; ``progress`` is updated in place so a failure still tells what ran."""
    params = [p for p in module.parameters() if p.requires_grad]
    with warnings.catch_warnings():
        # torch notes that Opacus's backward hooks fire on inputs without grad: expected here
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(1, epochs + 1):
            for batch in batches():
                size = int(batch[0].shape[0])
                if size == 0:  # noise-only step: zero-length per-sample gradients, no forward
                    for p in params:
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    loss = None
                    progress.empty += 1
                else:
                    loss = _step(gsm, loss_fn, tuple(t.to(device) for t in batch), num_inputs, optimizer)
                    progress.total_loss += loss * size
                    progress.seen += size
                progress.steps += 1
                if on_step:
                    on_step(StepInfo(epoch, progress.steps, size, loss))


_PARAM_ATTRS = ("grad_sample", "summed_grad", "_forward_counter", "_current_grad_sample", "_norm_sample")


def _strip_opacus_state(module: nn.Module) -> None:
    """Remove per-sample state Opacus leaves on parameters, and the last noisy gradient."""
    for p in module.parameters():
        for attr in _PARAM_ATTRS:
            if hasattr(p, attr):
                delattr(p, attr)
        p.grad = None


def _poisson_batches(tensors, sample_rate: float, steps: int, uniform: Callable[[int], torch.Tensor]):
    """``steps`` Poisson batches: each record joins independently with probability ``sample_rate``.

    The same draw as Opacus's ``UniformWithReplacementSampler`` (``uniform(n) < q``), but with
    exactly ``steps`` = ceil(n / batch_size) batches an epoch: ``DPDataLoader`` takes int(1 / q)
    steps, one short for some sizes (int(1 / (1 / 93)) == 92).
    """
    n = tensors[0].shape[0]
    for _ in range(steps):
        idx = torch.nonzero(uniform(n) < sample_rate).reshape(-1)
        yield tuple(t[idx] for t in tensors)


class _CSPRNGNoiseDPOptimizer(DPOptimizer):
    """DPOptimizer whose Gaussian noise comes from :class:`SecureRNG`.

    Each coordinate is (z1 + z2 + z3 + z4) / 2 with z_i ~ N(0, (sigma C)^2) in float64 — the
    same floating-point defence as Opacus's secure mode — then cast to the gradient's dtype.
    """

    def __init__(self, *, rng: SecureRNG, **kwargs) -> None:
        super().__init__(secure_mode=True, **kwargs)
        self._rng = rng

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        sizes = [p.summed_grad.numel() for p in self.params]
        noise = self._rng.normal_sum4(sum(sizes)).mul_(std)
        offset = 0
        for p, size in zip(self.params, sizes, strict=True):
            _check_processed_flag(p.summed_grad)
            chunk = noise[offset : offset + size].view_as(p.summed_grad)
            offset += size
            p.grad = (p.summed_grad + chunk.to(device=p.summed_grad.device, dtype=p.summed_grad.dtype)).view_as(p)
            _mark_as_processed(p.summed_grad)
