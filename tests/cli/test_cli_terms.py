"""`bank add` options for term, URL-prefix and URL-hash banks, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from safeset.cli.main import app

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_term_bank_options_from_the_command_line(tmp_path: Path) -> None:
    terms, near = tmp_path / "t.txt", tmp_path / "n.txt"
    terms.write_text("zorblax\nquinfrob\n", encoding="utf-8")
    near.write_text("snargle\n", encoding="utf-8")
    banks = tmp_path / "banks"
    base = ("bank", "add", "--banks", banks, "--kind", "term")
    code, output = invoke(*base, "--name", "t", "--match", "substring", "--normalize", "casefold,accents", terms)
    assert code == 0 and "2 term entries" in output, output
    code, output = invoke(*base, "--name", "r", "--near", near, "--within", "3", "--action", "remove", terms)
    assert code == 0, output
    t = json.loads((banks / "t" / "bank.json").read_text())
    r = json.loads((banks / "r" / "bank.json").read_text())
    assert (t["details"]["match"], t["details"]["normalization"], t["action"]) == (
        "substring",
        ["casefold", "accents"],
        "review",
    )
    assert (r["details"]["near"]["within_tokens"], r["action"]) == (3, "remove")


def test_each_kind_offers_only_its_own_options(tmp_path: Path) -> None:
    code, term_help = invoke("bank", "add", "term", "--help")
    assert code == 0 and "--near" in term_help and "--min-quality" not in term_help
    code, md5_help = invoke("bank", "add", "md5", "--help")
    assert code == 0 and "--near" not in md5_help and "--url-forms" not in md5_help and "--name" in md5_help
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\n", encoding="utf-8")
    # The kind as a subcommand, or as --kind anywhere on the line: the same import.
    assert invoke("bank", "add", "term", "--banks", tmp_path / "a", "--name", "x", terms)[0] == 0
    assert invoke("bank", "add", "--banks", tmp_path / "b", "--kind=term", "--name", "x", terms)[0] == 0
    assert (tmp_path / "a" / "x" / "bank.json").is_file() and (tmp_path / "b" / "x" / "bank.json").is_file()


def test_option_errors_are_one_clear_line(tmp_path: Path) -> None:
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\n", encoding="utf-8")
    banks = tmp_path / "banks"
    for extra, message in [
        (("--kind", "term", "--normalize", "stemming"), "unknown normalisation step(s) stemming"),
        (("--kind", "md5", "--match", "word"), "No such option: --match"),  # md5's command has no such flag
        (("--kind", "url-md5", "--url-forms", "raw"), "unknown URL form(s) raw"),
    ]:
        code, output = invoke("bank", "add", "--banks", banks, "--name", "x", *extra, terms)
        assert code == 2 and message in output and "Traceback" not in output, output
