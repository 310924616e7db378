"""privacy_report and the `privacy report` / `privacy plan` commands."""

from __future__ import annotations

import argparse
import json

import pytest

from fedcore.dp.commands import register
from fedcore.dp.report import ReportError, format_table, privacy_report


def client(eps, steps, exhausted=False, delta=1e-5, accountant="rdp", sigma=1.8):
    return {
        "epsilon": eps,
        "delta": delta,
        "accountant": accountant,
        "steps": steps,
        "noise_multiplier": sigma,
        "exhausted": exhausted,
    }


def write_run(run_dir, lines) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines))


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    write_run(
        run,
        [
            {
                "round": 1,
                "epsilon_max": 2.0,
                "privacy": {"casme2": client(2.0, 8), "samm": client(1.5, 5), "smic": client(1.0, 6)},
            },
            {"event": "client_joined", "client": "late"},  # not a privacy record: skipped
            {
                "round": 2,
                "epsilon_max": 3.1,
                "privacy": {"casme2": client(3.1, 16), "samm": client(3.0, 10, True), "smic": client(1.6, 12)},
            },
            "",
            {"round": 3, "epsilon_max": 3.9, "privacy": {"casme2": client(3.9, 24), "samm": client(3.0, 10, True)}},
        ],
    )
    return run


def test_report_rows_give_each_clients_latest_state_and_status(run_dir):
    rows = {r.client: r for r in privacy_report(run_dir)}
    assert list(rows) == ["casme2", "samm", "smic"]
    assert rows["casme2"].epsilon == 3.9 and rows["casme2"].steps == 24 and rows["casme2"].rounds_trained == 3
    assert rows["casme2"].status == "active" and rows["casme2"].accountant == "rdp" and rows["casme2"].delta == 1e-5
    assert rows["samm"].status == "exhausted" and rows["samm"].rounds_trained == 2  # round 3: no new steps
    assert rows["smic"].status == "absent since round 3" and rows["smic"].last_round == 2


def test_report_writes_a_png_of_epsilon_per_round(run_dir):
    privacy_report(run_dir)
    png = run_dir / "report" / "epsilon.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_table_has_a_row_per_client_with_every_column(run_dir):
    table = format_table(privacy_report(run_dir, write_png=False))
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["client", "epsilon", "delta", "accountant", "steps"]
    assert "rounds trained" in lines[0] and "status" in lines[0]
    assert len(lines) == 2 + 3
    assert "casme2" in lines[2] and "3.900" in lines[2] and "1e-05" in lines[2] and "active" in lines[2]
    assert not (run_dir / "report").exists()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"round": 1, "epsilon_max": 1.0, "privacy": {}}', "{oops"], "metrics.jsonl line 2: not valid JSON"),
        ([{"round": "one", "epsilon_max": 1.0, "privacy": {}}], "field 'round' must be an integer"),
        ([{"round": 1, "privacy": {}}], "field 'epsilon_max' must be a number"),
        (
            [{"round": 1, "epsilon_max": 1.0, "privacy": {"a": {"epsilon": 1.0}}}],
            r"privacy\['a'\]: missing field 'delta'",
        ),
        (
            [{"round": 1, "epsilon_max": 1.0, "privacy": {"a": client(1.0, 8, exhausted="no")}}],
            "field 'exhausted' must be bool",
        ),
        ([{"round": 1, "epsilon_max": 1.0, "privacy": {"a": client(-1.0, 8)}}], "field 'epsilon' must be"),
        (
            [{"round": 2, "epsilon_max": 1.0, "privacy": {}}, {"round": 1, "epsilon_max": 1.0, "privacy": {}}],
            "round 1 does not follow round 2",
        ),
        ([{"round": 1, "loss": 0.3}], "no record with a 'privacy' field"),
    ],
)
def test_malformed_metrics_name_the_line_and_field(tmp_path, lines, message):
    write_run(tmp_path / "run", lines)
    with pytest.raises(ReportError, match=message):
        privacy_report(tmp_path / "run", write_png=False)


def parse(argv):
    parser = argparse.ArgumentParser(prog="fedpsyau")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_report_prints_the_table_and_exits_zero(run_dir, capsys):
    args = parse(["privacy", "report", str(run_dir)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "casme2" in out and "exhausted" in out and "epsilon.png" in out
    assert (run_dir / "report" / "epsilon.png").is_file()


@pytest.mark.parametrize("case", ["missing_dir", "missing_metrics", "malformed"])
def test_cli_report_exits_two_with_a_precise_message(tmp_path, capsys, case):
    run = tmp_path / "run"
    if case != "missing_dir":
        run.mkdir()
    if case == "malformed":
        (run / "metrics.jsonl").write_text("[1, 2]\n")
    args = parse(["privacy", "report", str(run)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    expected = {
        "missing_dir": "does not exist",
        "missing_metrics": "has no metrics.jsonl",
        "malformed": "line 1: expected a JSON object",
    }[case]
    assert expected in err and str(run) in err


def test_cli_plan_prints_the_derived_noise(capsys):
    args = parse(["privacy", "plan", "--examples", "255", "--rounds", "50", "--noise-multiplier", "1.8"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # PRV by default (7.34), RDP logged beside it as the cross-check (7.96)
    assert "noise_multiplier=1.8 (configured)" in out and "planned_epsilon=7.3" in out
    assert "accountant=prv (rdp cross-check 7.9" in out
    bad = parse(["privacy", "plan", "--examples", "100", "--rounds", "5", "--epsilon", "3", "--delta", "0.5"])
    assert bad.func(bad) == 2
    assert "delta" in capsys.readouterr().err


def test_cli_report_on_a_client_workdir_prints_its_own_charges_and_steps(tmp_path, capsys):
    from fedcore.dp.ledger import ChargeKey, PrivacyLedger

    ledger = PrivacyLedger.open(
        tmp_path / "privacy_ledger.json", accountant="rdp", delta=1e-5, target_epsilon=8.0, workdir=tmp_path
    )
    ledger.charge(1, 0.125, 1.5, 8, key=ChargeKey("fed", "run-3", 1, 0))
    ledger.charge_statistics(ChargeKey("fed", "run-3", 0, 0, "statistics"), 2.0)
    args = parse(["privacy", "report", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dp-sgd" in out and "statistics" in out and "fed/run-3" in out and "8 DP-SGD steps" in out


def test_cli_new_budget_archives_and_a_missing_ledger_needs_it(tmp_path, capsys):
    from fedcore.dp.ledger import LedgerError, PrivacyLedger

    path = tmp_path / "privacy_ledger.json"
    ledger = PrivacyLedger.open(path, accountant="rdp", delta=1e-5, target_epsilon=8.0, workdir=tmp_path)
    ledger.charge(1, 0.125, 1.5, 8)
    path.unlink()  # lost: the workdir's marker shows it trained
    with pytest.raises(LedgerError, match="is missing"):
        PrivacyLedger.open(path, accountant="rdp", delta=1e-5, target_epsilon=8.0, workdir=tmp_path)
    args = parse(
        ["privacy", "new-budget", "--ledger", str(path), "--workdir", str(tmp_path), "--reason", "ledger lost"]
    )
    assert args.func(args) == 0 and "NEW PRIVACY BUDGET" in capsys.readouterr().out
    assert PrivacyLedger.open(path, accountant="rdp", delta=1e-5, target_epsilon=8.0, workdir=tmp_path).spent() == 0
