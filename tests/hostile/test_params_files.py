"""Hostile params files: an alias bomb, a section given twice, bytes that are not UTF-8.

Each is one line naming the file and the fix, exit code 2, no traceback (issue 27). Before:
the alias bomb grew the process past 5 GB while the error message built ``repr(value)``, a
second ``split:`` silently replaced the first (DVC refuses that file), and a Latin-1 byte was
a ``UnicodeDecodeError`` traceback.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spino_core.config import load_config, parse_overrides
from spino_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _alias_bomb(depth: int) -> str:
    """~1.2 kB of YAML under a known key (``split.k``) that expands to 10^depth strings."""
    anchors = ["&a [" + ", ".join(["lol"] * 10) + "]"]
    for i in range(1, depth):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        anchors.append(f"&{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "split:\n  k: [" + ", ".join(anchors) + "]\n"


def _one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def _limit_memory() -> None:
    """The child may not grow past 1.5 GiB of address space (the bomb needed > 5.8 GB)."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))


def _spino_split(params: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "split", "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )


@pytest.mark.timeout(60)
def test_alias_bomb_is_one_line_in_under_5_s_with_bounded_memory(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(_alias_bomb(9))
    assert len(params.read_bytes()) < 1300
    start = time.monotonic()
    proc = _spino_split(params)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(params) in lines[0] and "alias" in lines[0] and len(lines[0]) < 400, lines[0]
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_a_smaller_alias_bomb_is_refused_too(tmp_path: Path) -> None:
    """Depth 5 used to "work": one 3.5 MB error line."""
    params = tmp_path / "params.yaml"
    params.write_text(_alias_bomb(5))
    with pytest.raises(ConfigError) as info:
        load_config(params)
    assert "alias" in _one_line(info, params) and len(str(info.value)) < 400


def test_a_few_aliased_values_are_a_short_type_error(tmp_path: Path) -> None:
    """Depth 3 (1,000 strings) is no bomb: the type error shows a shortened value."""
    params = tmp_path / "params.yaml"
    params.write_text(_alias_bomb(3))
    with pytest.raises(ConfigError) as info:
        load_config(params)
    msg = str(info.value)
    assert msg.startswith("params: split.k: expected an integer") and len(msg) < 400, msg[:500]


def test_an_alias_bomb_in_an_override_is_refused() -> None:
    text = _alias_bomb(9).split("k: ", 1)[1].strip()
    with pytest.raises(ConfigError) as info:
        parse_overrides([f"split.k={text}"])
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_long_value_in_a_type_error_is_shortened(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  k: [" + ", ".join(["word"] * 5000) + "]\n")
    with pytest.raises(ConfigError) as info:
        load_config(params)
    msg = str(info.value)
    assert msg.startswith("params: split.k:") and len(msg) < 400, msg[:500]


def test_small_aliases_still_work(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "defaults: paper\nheads:\n  semantic_hidden: &w [32, 32]\n  boundary_hidden: *w\n"
    )
    cfg = load_config(params)
    assert cfg.heads.boundary_hidden == cfg.heads.semantic_hidden == (32, 32)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("split:\n  k: 3\nheads:\n  lr: 0.01\nsplit:\n  seed: 4\n", "split", "1 and 5"),
        ("split:\n  k: 3\n  seed: 1\n  k: 5\n", "split.k", "2 and 4"),
        ("seed: 1\nseed: 2\n", "seed", "1 and 2"),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path: Path, text: str, key: str, lines: str) -> None:
    """YAML readers disagree on duplicates (PyYAML: the last wins; DVC: a corrupt file)."""
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(params)
    msg = _one_line(info, params)
    assert f"'{key}'" in msg and f"lines {lines}" in msg, msg


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_bytes("# Zürich run\nsplit:\n  k: 3\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(params)
    assert "UTF-8" in _one_line(info, params)


@pytest.mark.parametrize(
    "content",
    [
        b"split:\n  k: 3\nsplit:\n  seed: 4\n",
        "# Zürich\nsplit:\n  k: 3\n".encode("latin-1"),
    ],
)
def test_cli_says_one_line_and_exits_2(tmp_path: Path, content: bytes) -> None:
    params = tmp_path / "params.yaml"
    params.write_bytes(content)
    proc = _spino_split(params)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spino: error: "), proc.stderr[-2000:]
    assert str(params) in lines[0]


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+2e5", "3e+2", "1.5e3", "5.e-1"])
def test_exponent_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path: Path, text: str) -> None:
    """``lr: 1e-3`` is a float to DVC (YAML 1.2, ruamel) but a *string* to PyYAML (YAML 1.1
    needs ``1.0e-3``): ``-S student.lr=1e-3`` or that line in params.yaml was refused as
    "expected a number, got '1e-3'", while ``dvc exp run -S`` wrote it that way."""
    params = tmp_path / "params.yaml"
    params.write_text(f"defaults: paper\nstudent:\n  lr: {text}\n")
    assert load_config(params).student.lr == float(text)
    assert dict(parse_overrides([f"student.lr={text}"]))["student.lr"] == float(text)
    other = tmp_path / "other.yaml"
    other.write_text(
        "defaults: paper\nsplit:\n  stems: [1e3, e5, 1_000]\n"
    )  # a stem list stays strings
    with pytest.raises(ConfigError):
        load_config(other)  # 1e3 is now a number: not a stem name


def test_integers_and_words_are_unchanged(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("defaults: paper\nsplit:\n  k: 3\n  seed: 10\n  stems: [e5, 1e, 12abc]\n")
    cfg = load_config(params)
    assert (cfg.split.k, cfg.split.seed, cfg.split.stems) == (3, 10, ("e5", "1e", "12abc"))
