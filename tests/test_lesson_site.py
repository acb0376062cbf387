"""The lessons' site (mkdocs.yml, mkdocs-jupyter) builds, with the notebooks executed.

The whole site takes minutes; this builds it from one lesson (with the index page and the helper
modules the lessons import) into a temporary folder, with the repository's own mkdocs.yml
pointed there, and checks that the page holds the executed outputs: printed numbers, a plot, and
the checks' "not done" for the starters.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml  # comes with mkdocs, which the test extra installs

ROOT = Path(__file__).resolve().parents[1]
LESSON = "02_layernorm"


def test_site_builds_with_executed_lessons(tmp_path):
    docs = tmp_path / "lessons"
    docs.mkdir()
    for name in [f"{LESSON}.ipynb", "README.md", "checks.py", "diagrams.py"]:
        shutil.copy(ROOT / "lessons" / name, docs / name)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "lessons"
    config["site_dir"] = str(tmp_path / "site")
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocs-jupyter" in plugin:
            assert plugin["mkdocs-jupyter"]["execute"] is True
            plugin["mkdocs-jupyter"]["cache"] = False
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "index.html").exists()
    page = (site / f"{LESSON}.html").read_text(encoding="utf-8")
    assert "relative error" in page            # printed by the executed cells
    assert "data:image/png" in page            # the plots are in the page
    assert "ExerciseNotDone" in page           # the starters, as a learner gets them
    assert "ModuleNotFoundError" not in page
