"""Scene supervision: per-token labels from a Shapes World scene, its loss, and the DiT's scene head."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kinema.models.dit import DiT, DiTConfig
from kinema.diffusion.flow import flow_loss
from kinema.train.scene_labels import GROUPS, IGNORE, NUM_CLASSES, clip_labels, latent_frame_groups, object_weights, scene_loss, token_labels
from kinema.world.scene import CAMERAS, COLORS, MOTIONS, SHAPES, ClipSpec, ObjectSpec, Scene

CLIP = ClipSpec(64, 64, 17, 8.0)


def _scene(motion: str = "still", camera: str = "static", x: float = 0.3, y: float = 0.6) -> Scene:
    return Scene(objects=(ObjectSpec("star", "blue", "medium", motion, "normal", x, y),), camera=camera)


def test_latent_frame_groups_follow_the_causal_vae():
    assert latent_frame_groups(9, 4) == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert len(latent_frame_groups(17, 4)) == 5
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_frame_groups(16, 4)


def test_a_still_object_labels_the_token_under_it_and_nothing_else():
    labels = token_labels(_scene(), CLIP, (16, 16))
    assert labels.shape == (4, 5, 4, 4)
    # centre (0.3 * 64, 0.6 * 64) = (19.2, 38.4) px: token row 2, column 1; the box is 15.4 px wide
    on = labels[0, 0] > 0
    assert on[2, 1] and on.sum() <= 4  # the box spans at most 2 x 2 tokens
    assert set(np.unique(labels[0][labels[0] > 0])) == {1 + list(COLORS).index("blue")}
    assert set(np.unique(labels[1][labels[1] > 0])) == {1 + SHAPES.index("star")}
    assert set(np.unique(labels[2][labels[2] > 0])) == {1 + MOTIONS.index("still")}
    assert (labels[3] == CAMERAS.index("static")).all()
    for k in range(5):  # still: the same tokens in every latent frame
        assert np.array_equal(labels[0, k] > 0, on)
    assert (labels[:3, :, ~on] == 0).all()


def test_a_moving_object_carries_its_labels_along():
    labels = token_labels(_scene("right", x=0.2, y=0.5), CLIP, (16, 16))
    columns = [np.nonzero((labels[0, k] > 0).any(0))[0].mean() for k in range(5)]
    assert columns == sorted(columns) and columns[-1] > columns[0]  # 0.22 widths/s for 2 s: 28 px to the right
    assert set(np.unique(labels[2][labels[2] > 0])) == {1 + MOTIONS.index("right")}


def test_the_camera_is_labelled_on_every_token():
    labels = token_labels(_scene(camera="zoom in"), CLIP, (16, 16))
    assert (labels[3] == CAMERAS.index("zoom in")).all()


def test_labels_cover_only_the_frames_the_trainer_takes():
    long_clip = ClipSpec(64, 64, 33, 8.0)
    scene = _scene("grow").to_dict()
    cut = clip_labels(scene, long_clip, (64, 64, 17), 8.0, (16, 16))
    assert cut.shape == (4, 5, 4, 4)
    assert np.array_equal(cut, token_labels(_scene("grow"), long_clip, (16, 16), frames_used=17))


@pytest.mark.parametrize(
    "scene, clip, why",
    [(None, CLIP, "no scene"), ("scene", ClipSpec(64, 112, 17, 8.0), "resized"), ("scene", ClipSpec(64, 64, 17, 16.0), "resampled")],
)
def test_clips_the_scene_does_not_describe_are_ignored(scene, clip, why):
    labels = clip_labels(_scene().to_dict() if scene else None, clip, (64, 64, 17), 8.0, (16, 16))
    assert labels.shape == (4, 5, 4, 4) and (labels == IGNORE).all(), why


def test_scene_loss_is_the_mean_of_each_groups_cross_entropy_and_skips_ignored_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 5, 4, 4, generator=g)
    labels = torch.stack([torch.stack([torch.randint(0, n, (5, 4, 4), generator=g) for _, n in GROUPS]) for _ in range(2)])
    labels[1] = IGNORE  # the second clip has no scene
    expected, start = [], 0
    for i, (_, n) in enumerate(GROUPS):
        expected.append(F.cross_entropy(logits[:1, start : start + n], labels[:1, i]))
        start += n
    assert torch.allclose(scene_loss(logits, labels), torch.stack(expected).mean())

    logits.requires_grad_(True)
    nothing = scene_loss(logits, torch.full_like(labels, IGNORE))
    nothing.backward()
    assert float(nothing.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_the_dit_scene_head_reads_the_token_grid_without_changing_the_velocity():
    torch.manual_seed(0)
    cfg = DiTConfig(latent_channels=4, hidden=32, depth=2, heads=4, text_dim=16, scene_classes=NUM_CLASSES, scene_layer=1)
    dit = DiT(cfg)
    for p in dit.parameters():  # leave adaLN-zero's identity start, so the check sees real outputs
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 4, 3, 4, 6), torch.rand(2)
    text, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    velocity, logits = dit(x, t, text, mask, return_scene=True)
    assert logits.shape == (2, NUM_CLASSES, 3, 2, 3)
    assert torch.equal(velocity, dit(x, t, text, mask))
    plain = DiT(DiTConfig(latent_channels=4, hidden=32, depth=2, heads=4, text_dim=16))
    assert plain.scene_head is None
    with pytest.raises(ValueError, match="no scene head"):
        plain(x, t, text, mask, return_scene=True)
    with pytest.raises(ValueError, match="scene_layer"):
        DiTConfig(depth=2, scene_classes=NUM_CLASSES, scene_layer=3)


def test_object_weights_cover_the_latent_cells_of_object_tokens():
    labels = torch.as_tensor(token_labels(_scene(), CLIP, (16, 16)))[None]  # [1, 4, 5, 4, 4]
    labels[0, :, 0, 0, 0] = IGNORE  # an unlabelled token counts as background
    w = object_weights(labels, (2, 2), 4.0)
    assert w.shape == (1, 1, 5, 8, 8)
    on = (labels[0, 0] > 0).repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert (w[0, 0][on] == 4.0).all() and (w[0, 0][~on] == 1.0).all() and on.any()


def test_weighted_flow_loss_is_the_weighted_mean():
    pred, target = torch.zeros(1, 1, 1, 1, 2), torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)
    assert float(flow_loss(pred, target)) == 5.0
    assert float(flow_loss(pred, target, torch.tensor([3.0, 1.0]).view(1, 1, 1, 1, 2))) == (3 * 1 + 9) / 4
