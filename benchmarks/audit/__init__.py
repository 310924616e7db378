"""Privacy-audit attacks for ``benchmarks/privacy_audit.py``.

- :mod:`.inversion`: gradient inversion by gradient matching (DLG / Inverting Gradients) with
  iDLG label inference, and image-similarity metrics.
- :mod:`.views`: what each party sees of a client's single-sample update: the plain update, the
  DP-SGD update (real Opacus clip + noise via :func:`fedcore.dp.opacus_train.dp_train`), and the
  coordinator's view of a real SecAgg+ round (each masked vector and the unmasked sum).
- :mod:`.membership`: membership-inference scores (loss threshold, LiRA with a global variance),
  ROC / AUC / TPR at a fixed FPR, and the DP hypothesis-testing bound.

Everything here is an attack or a measurement; nothing is used by the federation itself.
"""
