"""The command explains itself: `--help` (Hydra's help template filled from the config groups),
`--version`, and bash tab completion through Hydra's `-sc install=bash` / `query=bash`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from sparse_exp import cli_help
from sparse_exp.config.overrides import group_options


def test_help_page_lists_every_option_with_a_line_and_every_preset():
    page = cli_help.help_page()
    lines = page.splitlines()
    for group in cli_help.HELP_GROUPS:
        assert f"{group}:" in lines
        for option in group_options(group):
            row = [line for line in lines if line.split()[:1] == [option] and line.startswith("  ")]
            assert row and len(row[0].split()) > 1, (group, option)  # the option and its one-line description
    for preset in group_options("experiment"):
        assert preset in page
    assert "schema" not in page  # internal schema groups are not listed
    assert page.count("  sparse-exp ") >= 3  # examples
    assert "Chapter 4, COPS:" in page and "trainer.optimizer=sgd|adam|adamw" in page


def test_descriptions_are_one_sentence_from_the_yaml_comment():
    assert cli_help.describe("method", "g_cops") == "G-COPS (section 4.4): SNIP target, GraSP control."
    assert cli_help.describe("method", "set").startswith("SET (IP appendix G.3): random ERK start mask (eq. A.76)")
    assert cli_help.describe("model", "lenet5").endswith("(Table A.2)")  # from the registry
    assert all(len(cli_help.describe("trainer", t)) <= 90 for t in group_options("trainer"))


def test_help_is_hydras_help_template(make_cfg):
    """`sparse-exp --help` prints hydra.help.template: the config wires the generated page there."""
    make_cfg()  # registers the schemas
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.help.template == cli_help.help_page().replace("$", "$$")


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli_help.print_version_if_asked(["method=snip", "--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"sparse-exp {cli_help.version()}"
    cli_help.print_version_if_asked(["method=snip"])  # no flag, no exit


@pytest.mark.slow  # 9 s of subprocesses (bash completion)
def test_tab_completion_installs_and_offers_the_methods(tmp_path):
    """`eval "$(sparse-exp -sc install=bash)"` in bash, then what bash asks when TAB is pressed after
    `sparse-exp method=`: Hydra's completion runs `sparse-exp -sc query=bash`, which the override
    check must let through."""
    bin_dir = Path(sys.executable).parent
    script = (
        'eval "$(sparse-exp -sc install=bash)" && '
        'COMP_LINE="sparse-exp method=" && COMP_POINT=${#COMP_LINE} && COMP_CWORD=1 && '
        'hydra_bash_completion && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    offered = set(proc.stdout.split())
    assert {"method=freezenet", "method=cops", "method=snip", "method=rigl"} <= offered, proc.stdout + proc.stderr
    assert all(o.startswith("method=") for o in offered)
