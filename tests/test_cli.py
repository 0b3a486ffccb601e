import json

from typer.testing import CliRunner

from interp3d.cli import app

runner = CliRunner()


def test_categories_and_config_show():
    result = runner.invoke(app, ["categories"])
    assert result.exit_code == 0 and "swivelchair" in result.stdout
    result = runner.invoke(app, ["config", "show", "--preset", "paper", "--set", "seed=4"])
    assert result.exit_code == 0 and json.loads(result.stdout)["seed"] == 4


def test_synth_writes_dataset_and_preview(tmp_path):
    result = runner.invoke(app, ["synth", "-c", "bed", "--n", "50", "-o", str(tmp_path / "bed.npz"), "--preview", str(tmp_path / "bed.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bed.npz").stat().st_size > 0 and (tmp_path / "bed.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_category_and_override_give_clear_errors(tmp_path):
    result = runner.invoke(app, ["synth", "-c", "stool", "-o", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "unknown category 'stool'" in result.output
    result = runner.invoke(app, ["config", "show", "--set", "synthetic.bogus=1"])
    assert result.exit_code == 2 and "unknown key 'bogus'" in result.output


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "interp3d", "categories"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "swivelchair" in proc.stdout, proc.stderr[-2000:]
