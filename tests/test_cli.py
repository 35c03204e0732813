import json
import subprocess
import sys

import pytest

from conftest import SEED_ARTICLE
from dedup.cli import build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_find_without_files_runs_on_the_bundled_seeds(capsys):
    code, out, err = run(capsys, "find")
    assert code == 0 and err == ""
    assert "000_be3ac5dcbeda0709.txt: 5 repeated groups" in out
    assert "line   34  contained" in out
    assert "اقترح جو بايدن" in out  # right-to-left text printed as is


def test_find_json(capsys):
    code, out, _ = run(capsys, "find", str(SEED_ARTICLE), "--json")
    assert code == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    lines = [[m["line"] for m in g["members"]] for g in record["groups"]]
    assert lines == [[1, 3], [7, 34], [9, 36], [13, 38], [25, 26]]


def test_find_settings_are_passed_on(capsys):
    code, out, _ = run(capsys, "find", str(SEED_ARTICLE), "--min-contained-length", "10")
    assert code == 0 and "line   19  kept" in out  # the caption now counts as contained


def test_collapse_to_file_and_stdout(capsys, tmp_path):
    target = tmp_path / "clean.txt"
    code, _, _ = run(capsys, "collapse", str(SEED_ARTICLE), "-o", str(target))
    assert code == 0
    text = target.read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(SEED_ARTICLE.read_text(encoding="utf-8").splitlines()) - 9
    result = subprocess.run([sys.executable, "-m", "dedup", "collapse", str(SEED_ARTICLE)],
                            capture_output=True, check=True)
    assert result.stdout == text.encode("utf-8")


def test_collapse_keeps_crlf_bytes(capsys, tmp_path):
    source = tmp_path / "crlf.txt"
    source.write_bytes(b"Title line here\r\n\r\nBody\r\n\r\nTitle line here\r\n")
    target = tmp_path / "out.txt"
    assert run(capsys, "collapse", str(source), "-o", str(target))[0] == 0
    assert target.read_bytes() == b"Title line here\r\n\r\nBody\r\n"


def test_explain(capsys, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("The same sentence, told twice.", encoding="utf-8")
    b.write_text("the same sentence told twice", encoding="utf-8")
    code, out, _ = run(capsys, "explain", str(a), str(b))
    assert code == 0 and "verdict: exact" in out
    code, out, _ = run(capsys, "explain", str(a), str(b), "--json")
    assert json.loads(out)["jaccard"] == 1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.txt", "missing.txt: no such file"),
        (lambda p: p, "folder holds no .txt files"),
        (lambda p: (p / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n") and p / "latin1.txt",
         "latin1.txt line 2: not UTF-8 text (byte 0xe9 at offset 6)"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(capsys, tmp_path, make, message):
    path = make(tmp_path)
    code, out, err = run(capsys, "find", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_bad_setting_is_one_line(capsys):
    code, _, err = run(capsys, "find", "--threshold", "1.5")
    assert code == 2 and "threshold must be in (0, 1], got 1.5" in err


def test_collapse_into_missing_folder(capsys, tmp_path):
    code, _, err = run(capsys, "collapse", str(SEED_ARTICLE), "-o", str(tmp_path / "no" / "x"))
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize("command", ["find", "collapse", "explain"])
def test_every_help_shows_an_example(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    assert "example:" in sub.format_help() and f"dedup {command}" in sub.format_help()


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "dedup", "--version"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout.startswith("dedup ")
