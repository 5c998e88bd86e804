"""Training configs: the shipped files parse, typos and bad values are refused by name."""

from pathlib import Path

import pytest

from kinema.errors import KinemaInputError
from kinema.train.config import DEFAULT_STAGES, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_builtin_config_parses_with_the_recipe_values():
    cfg = load_config(CONFIGS / "builtin.toml")
    assert cfg.stages == list(DEFAULT_STAGES)  # the matcher picked no better clips (docs/benchmarks.md): not in the recipe
    assert cfg.data.buckets == [[64, 64], [64, 112], [112, 64]]
    assert cfg.text_encoder == "all-MiniLM-L6-v2"
    assert cfg.dit.model["hidden"] == 256 and cfg.dit.model["depth"] == 6
    assert cfg.dit.tasks["text"] >= 0.5 and set(cfg.dit.tasks) <= {"text", "first", "last", "first_last", "continue", "keyframes"}
    assert 0 < cfg.dit.caption_dropout < 1
    assert cfg.dataset_path == Path("runs/builtin") / "dataset"
    # shapes-v0.5's motion comes from the narrow first phase: it must stay on, inside the DiT's budget
    assert cfg.dit.first_phase.focus == "one-object-translation"
    assert 0 < cfg.dit.first_phase.minutes < cfg.total_budget_minutes
    # shapes-v0.6's VAE keeps the objects' shapes through its loss weighted towards salient pixels
    assert cfg.vae.salient_weight == 9.0


def test_experiment_configs_parse_and_keep_their_own_output_dir():
    experiments = sorted((CONFIGS / "experiments").glob("*.toml"))
    assert experiments
    for path in experiments:
        cfg = load_config(path)
        assert cfg.output_dir != "runs/builtin", f"{path.name} would overwrite the built-in run"


def test_output_override_moves_every_path(tmp_path):
    cfg = load_config(CONFIGS / "tiny.toml", output_dir=str(tmp_path / "out"))
    assert cfg.dataset_path == tmp_path / "out" / "dataset"
    assert cfg.vae_dir == tmp_path / "out" / "model" / "vae"


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeed = 1\n", "seeed"),
        ("[dit]\nbatchsize = 4\n", "batchsize"),
        ("[data.render]\nclips = 4\n", "clips"),
        ("[dit]\nlr = 'fast'\n", "dit.lr"),
        ("stages = ['dit', 'deploy']\n", "stages"),
        ("[data]\nframe_counts = [16]\n", "1 + 4k"),
        ("[data]\nbuckets = [[60, 64]]\n", "multiples of 16"),
        ("[dit]\nprecision = 'fp8'\n", "precision"),
        ("[dit]\ncaption_dropout = 1.5\n", "caption_dropout"),
        ("this is = not toml [\n", "not valid TOML"),
        ("[dit]\ntasks = { text = 1.0, morph = 1.0 }\n", "unknown task\\(s\\) morph"),
        ("[dit]\ntasks = { text = 0.0 }\n", "not all zero"),
        ("[dit]\ncamera_dropout = 2.0\n", "camera_dropout"),
        ("[dit]\ncamera_caption_free = 1.5\n", "camera_caption_free"),
        ("[dit]\nt_uniform_fraction = -0.1\n", "t_uniform_fraction"),
        ("[dit]\nscene_loss_weight = -1\n", "scene_loss_weight"),
        ("[dit]\nobject_loss_weight = 0.5\n", "object_loss_weight must be >= 1"),
        ("[dit]\ntemporal_loss_weight = -1\n", "temporal_loss_weight must be >= 0"),
        ("[data]\nframe_counts = [1, 17]\n[dit]\ntemporal_loss_weight = 1\n", "at least 2 latent frames"),
        ("[dit]\nnoise_frame_correlation = 1.0\n", "noise_frame_correlation must be in"),
        ("[dit]\ncamera_noise_warp = 1.5\n", "camera_noise_warp must be in"),
        ("[dit]\ncamera_noise_warp = 0.5\nnoise_frame_correlation = 0.5\n", "set at most one"),
        ("[dit]\nscene_loss_weight = 0.5\nscene_loss_layer = 9\n", "scene_loss_layer must be between 1 and the DiT's depth 8"),
        ("[dit]\nrectify = 1.5\n", "dit.rectify must be in [0, 1]"),
        ("[dit]\ninput_perturbation = -0.1\n", "dit.input_perturbation must be >= 0"),
        ("[dit]\noptimizer = 'sgd'\n", "dit.optimizer must be one of adamw, muon"),
        ("[dit]\nmask_ratio = 1.0\n", "dit.mask_ratio must be in"),
        ("[dit]\nmask_step_fraction = 0\n", "dit.mask_step_fraction must be in"),
        ("[dit]\nmask_ratio = 0.4\n", "needs [dit.model] mask_blocks >= 1"),
        ("[dit]\nmask_ratio = 0.4\nscene_loss_weight = 1\n[dit.model]\nmask_blocks = 1\n", "cannot be combined with the scene loss"),
        ("[dit]\ncurriculum_steps = -5\n", "dit.curriculum_steps must be >= 0"),
        ("[dit]\ntime_budget_minutes = 30.0\n[dit.first_phase]\nminutes = 30.0\n", "must be less than dit.time_budget_minutes"),
        ("[dit.first_phase]\nminutes = 5.0\nfocus = \"\"\n", "dit.first_phase.focus must be one of"),
        ("[dit.first_phase]\nminutes = 5.0\nfocus = \"camera-moves+spin\"\n", "dit.first_phase.focus must be one of"),
        ("[dit.first_phase]\nminutes = 5.0\nsize = [64, 60]\n", "dit.first_phase.size"),
        ("[dit.first_phase]\nminutes = 5.0\nframes = 16\n", "dit.first_phase.frames must be 1 + 4k"),
        ("[dit]\ninit_from = \"runs/x/dit\"\n[dit.first_phase]\nminutes = 5.0\n", "set one"),
        ("[dit.first_phase]\nminutes = -1.0\n", "dit.first_phase.minutes must be >= 0"),
        ("cache_max_clips_per_bucket = -1\n", "cache_max_clips_per_bucket"),
        ("[vae]\nsalient_weight = -1.0\n", "vae.salient_weight must be >= 0"),
        ("[matcher]\ncandidates = 0\n", "matcher.candidates must be between 1 and 16"),
        ("[matcher]\nnoise_max = 1.0\n", "matcher.noise_max must be in"),
        ("[matcher]\nprecision = 'fp16'\n", "matcher.precision"),
        ("stages = ['data', 'export', 'matcher']\n", "matcher must come before export"),
    ],
)
def test_bad_configs_are_refused_with_the_key_named(tmp_path, text, message):
    with pytest.raises(KinemaInputError, match=message.replace("[", r"\[").replace("+", r"\+")):
        load_config(_write(tmp_path, text))


def test_a_first_phase_may_mix_slices_of_the_world(tmp_path):
    cfg = load_config(_write(tmp_path, "[dit.first_phase]\nminutes = 5.0\nfocus = \"one-object-translation+camera-moves\"\n"))
    assert cfg.dit.first_phase.focus == "one-object-translation+camera-moves"


def test_missing_config_file(tmp_path):
    with pytest.raises(KinemaInputError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_ints_are_accepted_for_floats(tmp_path):
    cfg = load_config(_write(tmp_path, "[dit]\nlr = 1\n"))
    assert cfg.dit.lr == 1.0 and isinstance(cfg.dit.lr, float)


def test_the_matcher_is_opt_in_and_its_minutes_come_off_the_dits_budget(tmp_path):
    from kinema.train.builtin import MATCHER_RESERVE_MINUTES, RunPaths, _dit_budget

    plain = load_config(_write(tmp_path, "total_budget_minutes = 60.0\n[dit]\ntime_budget_minutes = 0.0\n"))
    assert "matcher" not in plain.stages
    with_matcher = load_config(_write(tmp_path, "total_budget_minutes = 60.0\nstages = ['data', 'cache', 'dit', 'matcher', 'export']\n[dit]\ntime_budget_minutes = 0.0\n[matcher]\ntime_budget_minutes = 5.0\n"))
    paths = RunPaths(tmp_path / "run")
    assert _dit_budget(plain, paths) - _dit_budget(with_matcher, paths) == pytest.approx(5.0 + MATCHER_RESERVE_MINUTES)


def test_auto_precision_is_left_for_the_stages_to_time_and_explicit_ones_are_kept(tmp_path):
    """The recipe names "auto": which precision is faster depends on the CPU and the model, so each stage times
    both when it starts (kinema.train.precision.choose_precision); the config only checks the names."""
    cfg = load_config(CONFIGS / "builtin.toml")
    assert (cfg.vae.precision, cfg.dit.precision, cfg.cache_precision) == ("auto",) * 3
    p = tmp_path / "explicit.toml"
    p.write_text("[dit]\nprecision = 'bf16'\n[vae]\nprecision = 'fp32'\n")
    cfg = load_config(p)
    assert (cfg.dit.precision, cfg.vae.precision) == ("bf16", "fp32")


def test_asking_for_bf16_on_a_cpu_that_emulates_it_is_warned_about(tmp_path, monkeypatch, capsys):
    from kinema.train import builtin, precision
    from kinema.train.distributed import DistInfo

    p = tmp_path / "bf16.toml"
    p.write_text("stages = ['dit']\ncache_precision = 'fp32'\n[dit]\nprecision = 'bf16'\n[matcher]\nprecision = 'bf16'\n")
    cfg = load_config(p)
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)
    builtin._warn_emulated_bf16(cfg, DistInfo())
    assert "warning: dit asked for bf16, which this CPU only emulates" in capsys.readouterr().out  # the matcher does not run
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    builtin._warn_emulated_bf16(cfg, DistInfo())
    assert capsys.readouterr().out == ""


def test_a_config_may_extend_another_and_change_only_what_it_names(tmp_path):
    """An experiment states its changes over the recipe; everything else is the recipe's."""
    import dataclasses

    exp = tmp_path / "experiments" / "lr.toml"
    exp.parent.mkdir()
    exp.write_text(f'extends = "{CONFIGS / "builtin.toml"}"\noutput_dir = "runs/lr"\n[dit]\nlr = 1e-3\n[dit.model]\ndepth = 4\n')
    base, child = load_config(CONFIGS / "builtin.toml"), load_config(exp)
    assert (child.dit.lr, child.dit.model["depth"], child.output_dir) == (1e-3, 4, "runs/lr")
    assert child.dit.model["hidden"] == base.dit.model["hidden"]  # tables merge key by key
    child.dit.lr, child.dit.model["depth"], child.output_dir = base.dit.lr, base.dit.model["depth"], base.output_dir
    assert dataclasses.asdict(child) == dataclasses.asdict(base)
    # a relative path is taken from the extending file's folder, and chains go on
    (tmp_path / "grand.toml").write_text('extends = "experiments/lr.toml"\n[dit.tasks]\nfirst = 0.0\n')
    grand = load_config(tmp_path / "grand.toml")
    assert grand.dit.lr == 1e-3 and grand.dit.tasks["first"] == 0.0 and grand.dit.tasks["text"] == base.dit.tasks["text"]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, "in a loop"),
        ({"a.toml": 'extends = "missing.toml"\n'}, r"missing.toml \(named by extends in .*a.toml\)"),
        ({"a.toml": "extends = 3\n"}, "extends must be the path of another config"),
        ({"a.toml": 'extends = "b.toml"\n', "b.toml": "[dit]\nlr = 'fast'\n"}, "dit.lr must be a float"),
        ({"a.toml": 'extends = "b.toml"\n[dit]\nbatch = 3\n', "b.toml": ""}, r"unknown key\(s\) \['batch'\] in \[dit\]"),
    ],
)
def test_bad_extends_are_refused_with_the_file_named(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(KinemaInputError, match=message):
        load_config(tmp_path / "a.toml")


def test_show_config_prints_the_merged_config_and_trains_nothing(tmp_path, monkeypatch, capsys):
    import json
    import sys

    from kinema import cli

    from typer.testing import CliRunner

    from kinema.cli import app

    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{CONFIGS / "builtin.toml"}"\n[dit]\nlr = 1e-3\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(child), "--output", str(out), "--stages", "dit,export", "--show-config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["dit"]["lr"] == 1e-3 and shown["dit"]["model"]["hidden"] == 256  # the change, and the base's values
    assert shown["stages"] == ["dit", "export"] and shown["output_dir"] == str(out)
    assert not out.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "nowhere.toml"\n')
    monkeypatch.setattr(sys, "argv", ["kinema", "train", str(bad), "--show-config"])  # the real entry point: exit code 2
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and "nowhere.toml (named by extends in" in capsys.readouterr().err
