"""The video-text matcher: model, hard negatives, training batches, and best-of-N in the engine."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from kinema.models.io import load_pretrained, save_pretrained
from kinema.models.matcher import MatcherConfig, VideoTextMatcher, grid_features
from kinema.train.matcher_data import KINDS, negative_captions, negative_pool, perturb_scene
from kinema.world.sampling import sample_scene
from kinema.world.scene import HELD_OUT, ClipSpec, ObjectSpec, Scene


def _scenes(n: int, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, ClipSpec(64, 64, 17, 8.0)) for _ in range(n)]


def test_matcher_scores_any_bucket_and_loads_back(tmp_path):
    torch.manual_seed(0)
    m = VideoTextMatcher(MatcherConfig(latent_channels=4, text_dim=8, hidden=16, video_depth=1, fusion_depth=1, heads=2)).eval()
    text, mask = torch.randn(3, 5, 8), torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    for shape in ((3, 4, 5, 8, 8), (3, 4, 9, 14, 8), (3, 4, 1, 8, 14)):
        assert m(torch.randn(shape), text, mask).shape == (3,)
    save_pretrained(m, tmp_path / "matcher")
    back = load_pretrained(tmp_path / "matcher").eval()
    x = torch.randn(3, 4, 5, 8, 8)
    assert torch.equal(m(x, text, mask), back(x, text, mask))
    with pytest.raises(ValueError, match="patch"):
        m(torch.randn(1, 4, 5, 7, 8), text[:1], mask[:1])


def test_padding_tokens_do_not_change_the_score():
    torch.manual_seed(0)
    m = VideoTextMatcher(MatcherConfig(latent_channels=4, text_dim=8, hidden=16, video_depth=2, fusion_depth=2, heads=2)).eval()
    x, text = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 3, 8)
    short = m(x, text, torch.ones(1, 3, dtype=torch.bool))
    padded = m(x, torch.cat([text, torch.randn(1, 4, 8)], 1), torch.tensor([[1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool))
    assert torch.allclose(short, padded, atol=1e-5)


def test_grid_features_tell_every_token_apart():
    f = grid_features((2, 3, 4), 4)
    assert f.shape == (24, 6 * 2 * 4)
    assert torch.cdist(f, f).add(torch.eye(24) * 1e3).min() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_each_perturbation_changes_exactly_its_attribute_and_never_makes_a_heldout_pair(kind):
    rng = np.random.default_rng(1)
    changed_any = 0
    for scene in _scenes(60):
        new = perturb_scene(scene, kind, rng)
        if new is None:
            continue
        changed_any += 1
        assert new != scene and not HELD_OUT.scene_is_heldout(new)
        if kind == "count":
            assert len(new.objects) != len(scene.objects) and new.relation is None
            continue
        assert len(new.objects) == len(scene.objects) and new.background == scene.background and new.texture == scene.texture
        if kind == "camera":
            assert new.objects == scene.objects and new.camera != scene.camera and new.camera != "static"
            assert scene.texture != "plain"
            continue
        assert new.camera == scene.camera
        diffs = [(a, b) for a, b in zip(scene.objects, new.objects) if a != b]
        assert len(diffs) == 1
        a, b = diffs[0]
        field = {"color": "color", "shape": "shape", "motion": "motion"}[kind]
        assert getattr(a, field) != getattr(b, field)
        assert (a.x, a.y, a.size) == (b.x, b.y, b.size)
    assert changed_any > 30


def test_a_spinning_circle_gets_no_motion_negative_and_no_camera_negative_on_a_plain_background():
    rng = np.random.default_rng(0)
    scene = Scene(objects=(ObjectSpec("circle", "red", motion="spin"),), texture="plain")
    assert perturb_scene(scene, "motion", rng) is None
    assert perturb_scene(scene, "camera", rng) is None
    still = replace(scene, objects=(ObjectSpec("circle", "red"),))
    for _ in range(30):
        moved = perturb_scene(still, "motion", rng)
        assert moved.objects[0].motion not in ("still", "spin")


def test_negative_pool_offsets_cover_every_clip_and_skip_clips_without_a_scene():
    scenes = [s.to_dict() for s in _scenes(5)]
    texts, offsets = negative_pool([scenes[0], None, *scenes[1:]], seed=0)
    assert len(offsets) == 7 and offsets[-1] == len(texts)
    assert offsets[1] > offsets[0] and offsets[2] == offsets[1]  # the clip without a scene has none
    again, _ = negative_pool([scenes[0], None, *scenes[1:]], seed=0)
    assert again == texts  # seeded
    one = negative_captions(Scene.from_dict(scenes[0]), np.random.default_rng(0))
    assert all(isinstance(c, str) and c for c in one)
