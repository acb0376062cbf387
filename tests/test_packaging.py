"""pyproject.toml: the console scripts point at real commands, the extras exist."""

import importlib
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML by itself")
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("script", ["miniclip-train", "miniclip-eval", "miniclip-zeroshot",
                                    "miniclip-convert"])
def test_console_scripts_run(script, capsys):
    module, function = PROJECT["scripts"][script].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_extras_and_the_test_extra_holds_what_tests_import():
    extras = PROJECT["optional-dependencies"]
    assert {"test", "lessons", "reference", "data", "logging", "hub"} <= set(extras)
    names = {dep.split(">")[0].split("=")[0].split("[")[0].lower() for dep in extras["test"]}
    assert {"webdataset", "tensorboardx", "huggingface_hub"} <= names


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_python_dash_m_still_works():
    import subprocess

    for module in ("miniclip.train", "miniclip.evaluate", "miniclip.zeroshot", "miniclip.convert"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (module, proc.stderr)
