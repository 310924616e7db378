"""The default-suite subset of the fault matrix: one cell per aggregation mode (real processes).

- secagg: a client is SIGKILLed right after its masked input was accepted (when UNMASK opens);
  the survivors reveal its self-mask shares and the round's model is FedAvg over all four
  clients (issue 6's required end-to-end test);
- ckks: a client dies mid-round, after its ciphertext is in the sum (when DECRYPT opens); the
  other three decrypt and the model is FedAvg over all four (issue 7's required test);
A plain coordinator restart runs by default in tests/e2e/test_coordinator_sigkill.py; the full
matrix (every mode x stage x fault, with the plaintext check) is tests/e2e/test_fault_matrix.py
(slow; results in docs/FAULTS.md).
"""

from __future__ import annotations

from fault_kit import run_cell

from fedcore.common.stages import Stage


def test_secagg_client_killed_after_masked_input_still_yields_the_right_sum(tmp_path, port):
    result = run_cell(tmp_path, port, "secagg", Stage.SECAGG_UNMASK, "kill")
    assert result["victim_in_sum"] and result["line"]["contributors"] == 4
    assert result["line"]["notes"]["mode"] == "secagg" and result["line"]["notes"]["clipped"] == 0


def test_ckks_client_dying_mid_round_still_yields_the_right_sum(tmp_path, port):
    result = run_cell(tmp_path, port, "ckks", Stage.CKKS_DECRYPT, "kill")
    assert result["victim_in_sum"] and result["line"]["contributors"] == 4
    notes = result["line"]["notes"]
    assert notes["mode"] == "ckks" and len(notes["decryptors"]) >= 3 and not notes["disagreeing"]
