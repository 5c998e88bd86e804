"""The whole recipe on a tiny config, resume, and DDP with two processes."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from kinema.cli import app
from kinema.models.io import load_pretrained
from kinema.train.config import load_config
from kinema.train.distributed import DistInfo
from kinema.train.loop import EMA, LoopSettings, make_optimizer, run_loop

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    result = CliRunner().invoke(app, ["train", str(TINY), "--output", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_recipe_builds_a_loadable_model_dir(tiny_run):
    model = tiny_run / "model"
    vae, dit = load_pretrained(model / "vae"), load_pretrained(model / "dit")
    assert vae.config.latent_channels == dit.config.latent_channels == 4
    assert next(dit.parameters()).dtype == torch.float32  # loads back in fp32 ...
    from safetensors import safe_open

    with safe_open(str(model / "dit" / "model.safetensors"), "pt") as f:  # ... from fp16 on disk
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    std = torch.tensor(vae.config.latent_std)
    assert std.shape == (4,) and (std > 0).all() and not torch.allclose(std, torch.ones(4))
    pipe = json.loads((model / "pipeline.json").read_text())
    assert pipe["text_encoder"] == "hash-test" and pipe["buckets"] == [[32, 32], [32, 48]]
    stats = json.loads((tiny_run / "train_stats.json").read_text())["stages"]
    assert stats["vae"]["steps"] == 2 and stats["dit"]["steps"] == 3
    assert stats["dit"]["samples_per_second"] > 0


def test_the_matcher_stage_trains_on_hard_negatives_and_ships_with_its_candidates(tiny_run):
    from safetensors.torch import load_file

    from kinema.models.matcher import VideoTextMatcher

    negatives = load_file(str(tiny_run / "cache" / "negatives" / "negatives.safetensors"))
    meta = json.loads((tiny_run / "cache" / "latents" / "meta.json").read_text())
    assert negatives["offsets"].numel() == meta["num_clips"] + 1  # every Shapes World clip ...
    assert (negatives["offsets"][1:] > negatives["offsets"][:-1]).all()  # ... has hard negatives
    assert negatives["hidden"].shape[0] == int(negatives["offsets"][-1])
    stats = json.loads((tiny_run / "train_stats.json").read_text())["stages"]
    assert stats["matcher"]["steps"] == 3 and stats["matcher"]["parameters"] > 0
    matcher = load_pretrained(tiny_run / "model" / "matcher")
    assert isinstance(matcher, VideoTextMatcher) and matcher.config.hidden == 16
    assert json.loads((tiny_run / "model" / "pipeline.json").read_text())["candidates"] == 2


def test_export_without_the_matcher_stage_drops_an_earlier_matcher(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "work" / "export.done.json").unlink()
    cfg = load_config(TINY, output_dir=str(run))
    cfg.stages = ["export"]
    from kinema.train.builtin import run as run_recipe

    run_recipe(cfg)
    assert not (run / "model" / "matcher").exists()
    assert json.loads((run / "model" / "pipeline.json").read_text())["candidates"] == 1


def test_cache_holds_frame_latents_and_cameras(tiny_run):
    """The conditioning the DiT trains on: last/inner frames encoded alone, and each clip's camera."""
    from kinema.train.data import assign_buckets, load_clip, read_metadata, to_model_video
    from kinema.train.latents import LatentCache

    cache = LatentCache.load(tiny_run / "cache")
    vae = load_pretrained(tiny_run / "work" / "vae")
    records = assign_buckets(read_metadata(tiny_run / "dataset"), [[32, 32], [32, 48]], [9], 8.0)
    for key, latents in cache.latents.items():
        n = latents.shape[0]
        assert cache.frame_latents[key].shape == (n, 2, 4, *latents.shape[-2:])
        assert cache.camera[key].shape == (n, 4) and (cache.camera[key][:, 3] == 1).all()  # Shapes World knows its camera
        idx = cache.frame_index[key]
        assert (idx[:, 0] == 8).all() and ((idx[:, 1] >= 1) & (idx[:, 1] <= 7)).all()
        clip = records[int(cache.clip_ids[key][0])]
        frames = load_clip(clip, 8.0)
        with torch.no_grad():
            alone = vae.encode(to_model_video(frames[8:9]))[0, :, 0]
        assert torch.allclose(cache.frame_latents[key][0, 0].float(), alone, atol=2e-2)
        expected = [clip.camera.pan, clip.camera.tilt, clip.camera.zoom, 1.0]
        assert cache.camera[key][0].tolist() == expected
    pipe = json.loads((tiny_run / "model" / "pipeline.json").read_text())
    assert {"image-to-video", "first-last-frame", "keyframes", "long-video", "camera-control"} <= set(pipe["tasks"])


def test_clips_with_a_camera_signal_can_train_on_captions_without_the_camera(tiny_run):
    """Moving-camera clips carry camera-free captions; with the signal given they replace the caption
    (here always: camera_caption_free = 1), never when the signal was dropped or the prompt emptied."""
    import numpy as np

    from kinema.train.data import read_metadata
    from kinema.train.dit_trainer import DiTBatches
    from kinema.train.latents import LatentCache

    cache = LatentCache.load(tiny_run / "cache")
    records = read_metadata(tiny_run / "dataset")
    moving = np.array([r.camera is not None and r.camera.vector()[:3] != [0.0, 0.0, 0.0] for r in records])
    assert moving.any() and not moving.all()  # the tiny dataset has both kinds
    counts = (cache.signal_offsets[1:] - cache.signal_offsets[:-1]).numpy()
    assert ((counts >= 3) == moving).all() and ((counts == 0) == ~moving).all()

    cfg = load_config(TINY)
    cfg.dit.camera_caption_free = 1.0
    batches = DiTBatches(cache, cfg, DistInfo())
    clips = np.arange(len(records))
    cap = cache.caption_ids[cache.clip_offsets[:-1]]  # each clip's first caption
    camera = torch.ones(len(records), 4)
    camera[::2] = 0.0  # the signal dropped for every other clip
    dropped = torch.zeros(len(records), dtype=torch.bool)
    dropped[1] = True
    out = batches._captions_without_camera(cap, clips, dropped, camera, np.random.default_rng(0))
    for i in clips:
        own = set(cache.signal_ids[cache.signal_offsets[i] : cache.signal_offsets[i + 1]].tolist())
        swapped = moving[i] and i % 2 == 1 and i != 1
        assert (int(out[i]) in own) if swapped else int(out[i]) == int(cap[i]), i


def test_scene_supervision_refuses_a_dataset_without_scenes_or_a_temporal_patch(tiny_run, monkeypatch):
    import dataclasses

    import kinema.train.builtin as builtin
    from kinema.errors import KinemaInputError
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.scene_loss_weight, cfg.dit.scene_loss_layer = 1.0, 1
    real = builtin._records
    monkeypatch.setattr(builtin, "_records", lambda c: [dataclasses.replace(r, scene=None) for r in real(c)])
    with pytest.raises(KinemaInputError, match="no clip of the dataset has a 'scene'"):
        builtin._scene_labels(cfg, LatentCache.load(tiny_run / "cache"))
    cfg.dit.model = {**cfg.dit.model, "patch": [2, 2, 2]}
    with pytest.raises(KinemaInputError, match="temporal patch to be 1, not 2"):
        builtin._scene_labels(cfg, LatentCache.load(tiny_run / "cache"))


def test_scene_supervision_trains_the_scene_head(tiny_run, tmp_path):
    """With dit.scene_loss_weight > 0 the DiT gets a scene head, fed labels row for row with the cache
    (here with the object-weighted velocity loss too)."""
    from kinema.train.builtin import _scene_labels
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache
    from kinema.train.scene_labels import NUM_CLASSES

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.scene_loss_weight, cfg.dit.scene_loss_layer, cfg.dit.object_loss_weight = 1.0, 1, 3.0
    cache = LatentCache.load(tiny_run / "cache")
    labels = _scene_labels(cfg, cache)
    for key, latents in cache.latents.items():  # 32 x W px, 9 frames -> 3 latent frames of 2 x W/16 tokens
        assert labels[key].shape == (latents.shape[0], 4, 3, latents.shape[-2] // 2, latents.shape[-1] // 2)
        assert (labels[key][:, 0] > 0).any() and (labels[key] >= 0).all()  # objects found, no clip ignored
    with pytest.raises(Exception, match="scene labels"):
        train_dit(cfg, cache, 384, DistInfo(), tmp_path / "none")
    result, ema, model = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt", None, labels)
    assert result.steps == 3 and model.config.scene_classes == NUM_CLASSES
    torch.manual_seed(cfg.seed)
    from kinema.train.dit_trainer import build_dit

    init = build_dit({**cfg.dit.model, "scene_classes": NUM_CLASSES, "scene_layer": 1}, 4, 384)
    assert not torch.equal(model.scene_head[1].weight, init.scene_head[1].weight)


def test_curriculum_steps_draw_only_easy_clips_then_all(tiny_run, monkeypatch):
    """dit.curriculum_steps: step 0 draws only one-object, static-camera clips; after the curriculum, any clip.
    The tiny dataset's scenes are relabelled so that exactly clip 0 is easy."""
    import dataclasses

    import kinema.train.builtin as builtin
    from kinema.errors import KinemaInputError
    from kinema.train.dit_trainer import DiTBatches
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.curriculum_steps = 100
    cache = LatentCache.load(tiny_run / "cache")
    real = builtin._records
    one_easy = lambda c: [dataclasses.replace(r, scene={"objects": [{}] * (1 if i == 0 else 2), "camera": "static"}) for i, r in enumerate(real(c))]  # noqa: E731
    monkeypatch.setattr(builtin, "_records", one_easy)
    easy = builtin._curriculum_items(cfg, cache)
    batches = DiTBatches(cache, cfg, DistInfo(), None, easy)
    key = next(k for k, ids in cache.clip_ids.items() if 0 in ids.tolist())
    clip0 = (cache.latents[key][cache.clip_ids[key].tolist().index(0)].float() - batches.mean[0]) / batches.std[0]
    is_clip0 = lambda x0: x0.shape[1:] == clip0.shape and all(torch.equal(x, clip0) for x in x0)  # noqa: E731
    assert is_clip0(batches(0)[0])  # step 0 is always a curriculum step
    assert not all(is_clip0(batches(step)[0]) for step in range(100, 120))  # past the curriculum, the other clips come back
    labelled = DiTBatches(cache, cfg, DistInfo(), {k: torch.arange(len(ids)) for k, ids in cache.clip_ids.items()}, easy)
    key0, rows0 = labelled.rows(0)
    assert labelled.scene_targets(0).tolist() == rows0.tolist() == [cache.clip_ids[key0].tolist().index(0)] * len(rows0)  # labels follow the easy rows
    monkeypatch.setattr(builtin, "_records", lambda c: [dataclasses.replace(r, scene=None) for r in real(c)])
    with pytest.raises(KinemaInputError, match="one-object, static-camera"):
        builtin._curriculum_items(cfg, cache)


def test_image_steps_train_on_frames_encoded_alone(tiny_run, tmp_path):
    """dit.image_fraction: a share of steps trains on one-frame latents (frame 0 or a cached frame, each
    encoded alone), the multiplier times the batch, text-only, no camera; the video steps stay as they were."""
    import copy

    import numpy as np

    from kinema.errors import KinemaInputError
    from kinema.train.config import validate
    from kinema.train.dit_trainer import DiTBatches, train_dit
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cache = LatentCache.load(tiny_run / "cache")
    video_only = DiTBatches(cache, copy.deepcopy(cfg), DistInfo())
    cfg.dit.image_fraction, cfg.dit.image_batch_multiplier = 0.5, 3
    batches = DiTBatches(cache, cfg, DistInfo())
    image_steps = [s for s in range(40) if batches.is_image_step(s)]
    assert 8 < len(image_steps) < 32 and not any(video_only.is_image_step(s) for s in range(40))
    video_step = next(s for s in range(40) if s not in image_steps)
    assert torch.equal(batches(video_step)[0], video_only(video_step)[0])

    x0, text, mask, cond, camera, _ = batches.image_batch(image_steps[0])
    b, c = x0.shape[:2]
    assert b == 3 * cfg.dit.batch_size and x0.shape[2] == 1 and text.shape[0] == b and mask.shape[0] == b
    assert cond is not None and cond.shape == (b, c + 1, 1, *x0.shape[-2:]) and not cond.any() and not camera.any()
    key, _ = batches.sampler.batch(image_steps[0])
    mean, std = cache.latent_mean.view(1, c, 1, 1), cache.latent_std.view(1, c, 1, 1)
    pool = torch.cat([cache.latents[key][:, :, 0], cache.frame_latents[key][:, 0], cache.frame_latents[key][:, 1]]).float()
    pool = (pool - mean) / std
    for frame in x0[:, :, 0]:  # every image is one of the bucket's frames encoded alone
        assert torch.isclose(pool, frame).flatten(1).all(1).any()
    assert torch.equal(batches.image_batch(image_steps[0])[0], x0)  # stateless: a resumed run sees the same batch

    assert image_steps[0] < cfg.dit.steps and video_step < cfg.dit.steps  # the run below trains on both kinds
    result, _, _ = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt")
    assert result.steps == cfg.dit.steps and np.isfinite(result.final_loss)
    for bad, match in ((dict(image_fraction=1.0), "image_fraction"), (dict(image_batch_multiplier=0), "image_batch_multiplier"),
                       (dict(image_fraction=0.5, temporal_loss_weight=1.0), "whole clips")):
        broken = load_config(TINY)
        for k, v in bad.items():
            setattr(broken.dit, k, v)
        with pytest.raises(KinemaInputError, match=match):
            validate(broken)


def test_self_conditioning_trains_on_half_the_batch_given_the_models_own_estimate(tiny_run, tmp_path):
    """dit.model.self_condition: half the samples (by the step's generator) get x_t - t v from a
    gradient-free pass, the rest zeros; the zero-initialised input then learns."""
    from kinema.train.dit_trainer import build_dit, self_condition_input, train_dit
    from kinema.train.latents import LatentCache

    torch.manual_seed(0)
    model = build_dit({"hidden": 32, "depth": 1, "heads": 2, "self_condition": True}, 4, 384)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    xt, t = torch.randn(8, 4, 3, 4, 4), torch.rand(8)
    text, mask, camera = torch.randn(8, 5, 384), torch.ones(8, 5, dtype=torch.bool), torch.zeros(8, 4)
    estimate = self_condition_input(model, xt, t, text, mask, None, camera, torch.Generator().manual_seed(3))
    given = estimate.flatten(1).abs().sum(1) > 0
    assert 0 < int(given.sum()) < 8
    with torch.no_grad():
        own = xt - t.view(-1, 1, 1, 1, 1) * model(xt, t, text, mask, None, camera)
    torch.testing.assert_close(estimate[given], own[given], atol=1e-5, rtol=1e-5)

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.model = {**cfg.dit.model, "self_condition": True}
    _, _, trained = train_dit(cfg, LatentCache.load(tiny_run / "cache"), 384, DistInfo(), tmp_path / "ckpt")
    assert trained.self_cond_embed.weight.abs().sum() > 0


def test_a_dct_basis_dit_trains_and_saves_its_basis(tiny_run, tmp_path):
    """dit.model.temporal_basis = "dct" reaches the model the trainer builds, and a saved model keeps it."""
    from kinema.models.io import load_pretrained, save_pretrained
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.model = {**cfg.dit.model, "temporal_basis": "dct"}
    _, _, trained = train_dit(cfg, LatentCache.load(tiny_run / "cache"), 384, DistInfo(), tmp_path / "ckpt")
    assert trained.config.temporal_basis == "dct" and trained.final.linear.weight.abs().sum() > 0
    save_pretrained(trained, tmp_path / "dit")
    assert load_pretrained(tmp_path / "dit").config.temporal_basis == "dct"


def test_masked_training_masks_the_share_of_steps_asked_and_trains_the_mask_token(tiny_run, tmp_path):
    """dit.mask_ratio: in about mask_step_fraction of the steps the DiT keeps (1 - ratio) of its tokens;
    the mask token, read only in those steps, learns."""
    import numpy as np

    from kinema.train.dit_trainer import build_dit, masked_step_keep, train_dit
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.model = {**cfg.dit.model, "depth": 2, "mask_blocks": 1}
    cfg.dit.mask_ratio, cfg.dit.mask_step_fraction = 0.5, 1.0  # every one of the 3 steps masked
    _, _, trained = train_dit(cfg, LatentCache.load(tiny_run / "cache"), 384, DistInfo(), tmp_path / "ckpt")
    torch.manual_seed(cfg.seed)  # the same initialisation train_dit starts from
    assert not torch.equal(trained.mask_token, build_dit(cfg.dit.model, 4, 384).mask_token)

    cfg.dit.mask_step_fraction = 0.5
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    keeps = [masked_step_keep(cfg.dit, trained, (8, 4, 3, 4, 4), rng, g) for _ in range(200)]
    masked = [k for k in keeps if k is not None]
    assert 70 < len(masked) < 130 and all(k.shape == (8, 6) for k in masked)  # 3 x 2 x 2 tokens, half kept
    cfg.dit.mask_ratio = 0.0
    assert masked_step_keep(cfg.dit, trained, (8, 4, 3, 4, 4), rng, g) is None


def test_muon_trains_the_dit_and_resumes_from_its_checkpoint(tiny_run, tmp_path):
    """dit.optimizer = "muon": the recipe's DiT trains with Muon + AdamW and a later run resumes its state."""
    from kinema.train.dit_trainer import build_dit, train_dit
    from kinema.train.latents import LatentCache

    cache = LatentCache.load(tiny_run / "cache")
    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.optimizer = "muon"
    first, _, model = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt")
    torch.manual_seed(cfg.seed)  # the same initialisation train_dit starts from
    init = build_dit(cfg.dit.model, 4, 384)
    assert first.steps == 3 and not torch.equal(model.blocks[0].mlp.fc1.weight, init.blocks[0].mlp.fc1.weight)  # a Muon matrix moved
    cfg.dit.steps = 5
    resumed, _, _ = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt")
    assert resumed.steps == 5


def test_init_from_starts_the_dit_from_saved_weights_and_refuses_another_shape(tiny_run, tmp_path):
    """dit.init_from: a fresh run starts from a saved DiT's weights (the EMA too), not a random initialisation;
    a DiT of another shape, or a directory without one, is refused by name (by `kinema train` before any stage);
    one that differs only in where tokens sit (camera-aligned positions) or lacks an input this run adds
    (`nearest_given`, zero-initialised) is not."""
    from kinema.errors import KinemaInputError
    from kinema.models.io import save_pretrained
    from kinema.train.builtin import run
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    cache = LatentCache.load(tiny_run / "cache")
    cfg = load_config(TINY, output_dir=str(tiny_run))
    _, _, first = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt1")
    save_pretrained(first, tmp_path / "dit")
    cfg.dit.init_from, cfg.dit.lr = str(tmp_path / "dit"), 0.0  # lr 0: the start stays put
    _, ema, warm = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt2")
    for name, value in first.state_dict().items():
        assert torch.equal(warm.state_dict()[name], value) and torch.equal(ema.state_dict()[name], value), name
    cfg.dit.model = {**cfg.dit.model, "camera_positions": True}  # where tokens sit, not the weights: accepted
    _, _, placed = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt5")
    assert placed.config.camera_positions and torch.equal(placed.state_dict()["final.linear.weight"], first.state_dict()["final.linear.weight"])
    cfg.dit.model = {**cfg.dit.model, "nearest_given": True}  # a new zero-initialised input: accepted, starts at zero
    _, _, added = train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt6")
    assert added.nearest_embed.weight.abs().max().item() == 0.0
    assert torch.equal(added.state_dict()["final.linear.weight"], first.state_dict()["final.linear.weight"])
    save_pretrained(added, tmp_path / "dit_nearest")
    cfg.dit.init_from, cfg.dit.model = str(tmp_path / "dit_nearest"), {**cfg.dit.model, "nearest_given": False}
    with pytest.raises(KinemaInputError, match="nearest_given"):  # dropping a trained input is not a warm start
        train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt7")
    cfg.dit.init_from = str(tmp_path / "dit")
    cfg.dit.model = {**cfg.dit.model, "depth": cfg.dit.model["depth"] + 1}
    with pytest.raises(KinemaInputError, match="depth"):
        train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt3")
    cfg.dit.init_from = str(tmp_path)
    with pytest.raises(KinemaInputError, match="not a saved DiT"):
        train_dit(cfg, cache, 384, DistInfo(), tmp_path / "ckpt4")
    fresh = load_config(TINY, output_dir=str(tmp_path / "run"))
    fresh.dit.init_from = str(tmp_path / "nothing")
    with pytest.raises(KinemaInputError, match="not a saved DiT"):
        run(fresh)  # refused before any stage runs: nothing written
    assert not (tmp_path / "run").exists()


def test_first_phase_trains_on_one_object_clips_then_the_whole_dataset_from_its_weights(tmp_path, monkeypatch):
    """dit.first_phase: the data stage renders the narrow clips apart, the cache stage encodes them apart, the DiT
    trains on them first and the whole dataset's DiT starts from that phase's EMA weights."""
    import kinema.train.dit_trainer as dit_trainer
    from kinema.train.builtin import run
    from kinema.train.config import FirstPhaseConfig

    out = tmp_path / "run"
    cfg = load_config(TINY, output_dir=str(out))
    cfg.dit.first_phase = FirstPhaseConfig(minutes=1.0, clips=4, size=[32, 32], frames=9)  # the tiny steps limit ends it first
    starts, real = [], dit_trainer.warm_start
    monkeypatch.setattr(dit_trainer, "warm_start", lambda model, d: (starts.append(Path(d)), real(model, d)))
    caches, real_train = [], dit_trainer.train_dit
    monkeypatch.setattr(dit_trainer, "train_dit", lambda c, cache, *a, **k: (caches.append(cache), real_train(c, cache, *a, **k))[1])
    stats = run(cfg)["stages"]
    scenes = [json.loads(line)["scene"] for line in (out / "dataset_first" / "metadata.jsonl").read_text().splitlines()]
    assert len(scenes) == 4 and all(len(s["objects"]) == 1 and s["camera"] == "static" for s in scenes)
    assert stats["data"]["first_phase_clips"] == 4 and stats["cache"]["first_phase_clips"] == 4
    assert (out / "cache_first" / "latents" / "meta.json").is_file()
    assert stats["dit"]["first_phase"]["steps"] == 3 and stats["dit"]["steps"] == 3
    assert stats["dit"]["seconds"] > stats["dit"]["first_phase"]["seconds"]  # the DiT's time covers both phases
    assert starts == [out / "work" / "dit_first_ema"] and (out / "model" / "dit" / "model.safetensors").is_file()
    # both phases normalise latents alike: with the whole dataset's statistics, which the exported VAE carries
    main_meta, first_meta = (json.loads((out / d / "latents" / "meta.json").read_text()) for d in ("cache", "cache_first"))
    assert len(caches) == 2 and not torch.allclose(torch.tensor(first_meta["latent_mean"]), torch.tensor(main_meta["latent_mean"]))
    for cache in caches:
        assert torch.allclose(cache.latent_mean, torch.tensor(main_meta["latent_mean"])) and torch.allclose(cache.latent_std, torch.tensor(main_meta["latent_std"]))


def test_cache_subset_per_bucket(tmp_path):
    from kinema.train.latents import _subset

    idx = list(range(100))
    picked = _subset(idx, 10, seed=0)
    assert len(picked) == 10 and picked == sorted(picked) and set(picked) <= set(idx)
    assert picked == _subset(idx, 10, seed=0) and picked != _subset(idx, 10, seed=1)
    assert _subset(idx, 0, seed=0) == idx and _subset(idx, 500, seed=0) == idx


def test_a_camera_positions_dit_trains_saves_and_generates_a_pan_unlike_a_still_camera(tiny_run, tmp_path):
    """dit.model.camera_positions reaches the trained model, survives save/load, and the engine's camera signal
    moves its rotary positions: with a still camera the clip is the screen-position model's, with a pan it is not."""
    import shutil

    from kinema.engine.native import NativeBackend
    from kinema.models.io import save_pretrained
    from kinema.request import GenerationRequest
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    cfg = load_config(TINY, output_dir=str(tiny_run))
    cfg.dit.model = {**cfg.dit.model, "camera_positions": True}
    _, _, trained = train_dit(cfg, LatentCache.load(tiny_run / "cache"), 384, DistInfo(), tmp_path / "ckpt")
    assert trained.config.camera_positions
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model_dir)
    shutil.rmtree(model_dir / "dit")
    save_pretrained(trained, model_dir / "dit")
    aligned, plain = NativeBackend(model_dir), NativeBackend(model_dir)
    aligned.load(), plain.load()
    assert aligned._dit.config.camera_positions
    plain._dit.config.camera_positions = False  # the same weights with screen positions

    def clip(backend, camera):
        """The sampled latents (uint8 frames of a tiny model can round a small change away)."""
        latents, decode = [], backend._decode
        backend._decode = lambda z: (latents.append(z.clone()), decode(z))[1]
        request = GenerationRequest(prompt="a red circle", seed=1, steps=2, width=32, height=32, seconds=1.0, camera=camera)
        backend.generate(backend.validate(request))
        backend._decode = decode
        return torch.cat(latents).float()

    still, pan = {"pan": 0.0, "tilt": 0.0, "zoom": 0.0}, {"pan": 1.0, "tilt": 0.0, "zoom": 0.0}
    assert torch.equal(clip(aligned, still), clip(plain, still))
    assert (clip(aligned, pan) - clip(plain, pan)).abs().mean() > 0


def test_engine_generates_from_the_exported_model(tiny_run):
    from kinema.engine.native import NativeBackend
    from kinema.request import GenerationRequest

    backend = NativeBackend(tiny_run / "model")
    video = backend.generate(backend.validate(GenerationRequest(prompt="a red circle", seed=1, steps=2, width=32, height=32, seconds=1.0)))
    frames = getattr(video, "frames", video)
    assert tuple(frames.shape[1:]) == (32, 32, 3)


def test_rerun_skips_finished_stages(tiny_run):
    before = (tiny_run / "model" / "dit" / "model.safetensors").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["train", str(TINY), "--output", str(tiny_run)])
    assert result.exit_code == 0, result.output
    assert result.output.count("already done") == 6
    assert (tiny_run / "model" / "dit" / "model.safetensors").stat().st_mtime_ns == before


def test_cache_stage_refuses_without_a_vae(tmp_path):
    result = CliRunner().invoke(app, ["train", str(TINY), "--output", str(tmp_path), "--stages", "cache"])
    assert result.exit_code != 0


def _toy_step_fn(model):
    def step_fn(step: int):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 4, generator=g)
        loss = (model(x) - x.flip(1)).pow(2).mean()
        loss.backward()
        return float(loss.detach()), 8

    return step_fn


def _toy(ckpt_dir, total=6, interrupt_at=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    opt = make_optimizer(model, 1e-2, 0.01)
    ema = EMA(model, 0.9)
    inner = _toy_step_fn(model)

    def step_fn(step):
        if step == interrupt_at:
            raise KeyboardInterrupt
        return inner(step)

    settings = LoopSettings("toy", total, ckpt_dir, 1e-2, warmup_steps=2, grad_clip=0.5, progress=False)
    return run_loop(settings, model, opt, step_fn, DistInfo(), ema=ema), model, ema, opt


def test_interrupted_run_resumes_to_identical_state(tmp_path):
    _, straight, straight_ema, straight_opt = _toy(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _toy(tmp_path / "b", interrupt_at=3)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 3
    result, resumed, resumed_ema, resumed_opt = _toy(tmp_path / "b")
    assert result.steps == 6
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight_ema.model.state_dict().values(), resumed_ema.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight_opt.state_dict()["state"][0]["step"] == resumed_opt.state_dict()["state"][0]["step"]
    again, *_ = _toy(tmp_path / "b")
    assert again.stopped_by == "already done"


DDP_SCRIPT = """
import sys, torch
from pathlib import Path
from kinema.train.config import load_config
from kinema.train.distributed import init_distributed, cleanup
from kinema.train.dit_trainer import train_dit
from kinema.train.latents import LatentCache

run, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = load_config(sys.argv[3], output_dir=str(run))
dist = init_distributed()
if sys.argv[4:] == ["auto-timed-apart"]:  # "auto", where each rank's timing would choose differently
    from kinema.train import precision
    cfg.dit.precision = "auto"
    precision.native_cpu_bf16 = lambda: True
    faster = ("fp32", "bf16")[dist.rank]
    timed = precision.time_precisions
    precision.time_precisions = lambda step, repeats: {p: timed(step, 1)[p] * 0 + (1.0 if p == faster else 2.0) for p in ("fp32", "bf16")}
result, ema, model = train_dit(cfg, LatentCache.load(run / "cache"), 384, dist, out / "ckpt")
torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "steps": result.steps, "precision": result.precision}, out / f"rank{dist.rank}.pt")
cleanup(dist)
"""


def _ddp_run(tiny_run, out, *extra):
    """Both ranks' results of train_dit under torchrun with two processes."""
    script = out / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(tiny_run), str(out), str(TINY), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_ddp_ranks_train_in_rank_zeros_timed_precision(tiny_run, tmp_path):
    """precision = "auto" under torchrun: every rank times, rank 0's choice holds for all, so they stay in step."""
    r0, r1 = _ddp_run(tiny_run, tmp_path, "auto-timed-apart")
    assert r0["precision"].startswith("fp32 (measured") and r1["precision"].startswith("fp32 (measured")
    assert r0["steps"] == r1["steps"] == 3
    assert json.loads((tmp_path / "ckpt" / "precision.json").read_text())["precision"] == "fp32"
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k


def test_ddp_two_processes_end_with_identical_weights(tiny_run, tmp_path):
    r0, r1 = _ddp_run(tiny_run, tmp_path)
    assert r0["steps"] == r1["steps"] == 3
    from kinema.train.dit_trainer import build_dit

    cfg = load_config(TINY)
    torch.manual_seed(cfg.seed)  # the same initialisation train_dit starts from
    init = build_dit(cfg.dit.model, 4, 384).state_dict()
    changed = False
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
        assert torch.equal(r0["ema"][k], r1["ema"][k]), k
        changed |= not torch.equal(r0["model"][k], init[k])
    assert changed


@pytest.mark.parametrize(
    "option, value",
    [("temporal_loss_weight", 2.0), ("noise_frame_correlation", 0.5), ("camera_noise_warp", 0.8), ("rectify", 1.0), ("input_perturbation", 0.1)],
)
def test_training_options_change_the_update(tiny_run, tmp_path, option, value):
    """dit.temporal_loss_weight adds a term to what is minimised; dit.noise_frame_correlation, dit.camera_noise_warp,
    dit.rectify and dit.input_perturbation change the noise the model reads: either way the same batches give different weights."""
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    cache = LatentCache.load(tiny_run / "cache")
    models = []
    for v in (0.0, value):
        cfg = load_config(TINY, output_dir=str(tiny_run))
        setattr(cfg.dit, option, v)
        result, _, model = train_dit(cfg, cache, 384, DistInfo(), tmp_path / f"ckpt{v}")
        assert result.steps == 3
        models.append([p for p in model.parameters() if p.requires_grad])
    assert any(not torch.equal(a, b) for a, b in zip(*models))


def test_export_writes_the_noise_prior_the_dit_was_trained_with(tiny_run, tmp_path):
    import shutil

    from kinema.engine.native import NativeConfig
    from kinema.train.builtin import RunPaths, stage_export

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "work", run / "work")
    cfg = load_config(TINY, output_dir=str(run))
    cfg.dit.noise_frame_correlation = 0.25
    stage_export(cfg, RunPaths(cfg.output))
    assert NativeConfig.load(run / "model").noise_frame_correlation == 0.25
    cfg.dit.noise_frame_correlation, cfg.dit.camera_noise_warp = 0.0, 0.8
    stage_export(cfg, RunPaths(cfg.output))
    assert NativeConfig.load(run / "model").camera_noise_warp == 0.8


def test_the_vae_stage_weights_its_loss_towards_salient_pixels_when_asked(tiny_run, tmp_path):
    """vae.salient_weight reaches the VAE's loss: the same crops and seed give different weights."""
    from kinema.train.builtin import _records
    from kinema.train.vae_trainer import train_vae

    weights = []
    for w in (0.0, 9.0):
        cfg = load_config(TINY, output_dir=str(tiny_run))
        cfg.vae.salient_weight = w
        result = train_vae(cfg, _records(cfg), DistInfo(), tmp_path / f"vae{w}", tmp_path / f"ckpt{w}")
        assert result.steps == 2
        weights.append(load_pretrained(tmp_path / f"vae{w}").state_dict())
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_auto_precision_times_the_dit_step_without_changing_what_it_trains(tiny_run, tmp_path, monkeypatch):
    """With "auto" on a CPU with native bf16 the DiT stage times its own step in both precisions first
    (kinema.train.precision); those probe steps must leave the run exactly as an explicit choice trains it."""
    from kinema.train import precision
    from kinema.train.dit_trainer import train_dit
    from kinema.train.latents import LatentCache

    timed = precision.time_precisions  # the real probe steps run; the verdict is fixed, so the test is not a race
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    monkeypatch.setattr(precision, "time_precisions", lambda step, repeats: {p: s * 0 + {"fp32": 1.0, "bf16": 2.0}[p] for p, s in timed(step, repeats).items()})
    cache = LatentCache.load(tiny_run / "cache")
    runs = {}
    for name in ("auto", "fp32"):
        cfg = load_config(TINY, output_dir=str(tiny_run))
        cfg.dit.precision = name
        runs[name] = train_dit(cfg, cache, 384, DistInfo(), tmp_path / name)
    (auto, auto_ema, _), (fixed, fixed_ema, _) = runs["auto"], runs["fp32"]
    assert auto.precision.startswith("fp32 (measured in ") and fixed.precision == "fp32 (config)"
    assert json.loads((tmp_path / "auto" / precision.PRECISION_RECORD).read_text())["precision"] == "fp32"
    assert auto.final_loss == fixed.final_loss
    for (name, a), b in zip(auto_ema.state_dict().items(), fixed_ema.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_cache_stages_timing_probe_encodes_one_batch_of_the_commonest_bucket(tiny_run, monkeypatch):
    from kinema.train import latents
    from kinema.train.data import assign_buckets, read_metadata

    records = assign_buckets(read_metadata(tiny_run / "dataset"), [[32, 32], [32, 48]], [9], 8.0)
    loaded, seen = [], {}
    real_load = latents.load_clip
    monkeypatch.setattr(latents, "load_clip", lambda *a, **k: loaded.append(1) or real_load(*a, **k))

    class Encoder:
        def encode(self, captions):
            seen["captions"] = list(captions)

    vae = load_pretrained(tiny_run / "work" / "vae")
    real_encode = vae.encode
    vae.encode = lambda video: seen.setdefault("video", video.shape) and real_encode(video)
    probe = latents.encoding_probe(vae, Encoder(), records, 8.0, batch_size=3, caption_batch=5)
    assert loaded == []  # nothing decoded unless something is timed
    probe("fp32", 0)
    probe("bf16", 1)
    # the commonest bucket; between buckets of equal counts, the first key in sorted order
    commonest = max(sorted({r.bucket.key for r in records}), key=lambda k: sum(r.bucket.key == k for r in records))
    height, width = (int(v) for v in commonest.split("x")[:2])
    assert len(loaded) == 3 and seen["video"] == (3, 3, 9, height, width)  # decoded once, for both calls
    assert seen["captions"] == [c for r in records for c in r.captions][:5]
