"""Per-token scene labels for Shapes World clips: what a DiT token should know about its patch.

Why: the built-in DiT learns colours within its CPU budget but not shapes or
motion (docs/benchmarks.md), while a DiT that has fitted its clips draws them
(the fitted-DiT probe). REPA (Yu et al. 2024, "Representation Alignment for
Generation") showed that asking a DiT's middle layer to predict a good clean
representation of the image from its noisy input speeds training several-fold.
We render our own data, so we have a better target than any pretrained
encoder: the scene itself. Each token of the DiT's grid gets, for the latent
frame and 8*ph x 8*pw pixel patch it covers, the colour, shape and motion of the
object that fills most of it (0 = none) and the clip's camera move.

Clips without a scene (a user's own footage) get -1 everywhere: the auxiliary
loss ignores them, so mixed datasets train as before. Labels are per latent
frame, so they fit DiTs with temporal patch 1 (the native backend's).

Measured outcome: in 50-minute trials neither the scene loss nor the
object-weighted velocity loss (`object_weights`) lifted the built-in model's
judge figure (docs/benchmarks.md, "the scene as a training target").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kinema.world.render import object_track
from kinema.world.scene import CAMERAS, COLORS, MOTIONS, SHAPES, ClipSpec, Scene

# Label groups, in the order of the DiT's scene-head logits; each includes class 0 = "no object" except camera.
GROUPS: tuple[tuple[str, int], ...] = (
    ("color", 1 + len(COLORS)),
    ("shape", 1 + len(SHAPES)),
    ("motion", 1 + len(MOTIONS)),
    ("camera", len(CAMERAS)),
)
NUM_CLASSES = sum(n for _, n in GROUPS)
IGNORE = -1
# A token is labelled with an object whose box covers at least this share of the token or of the object.
MIN_COVER = 0.25

_COLOR_IDS = {c: i + 1 for i, c in enumerate(COLORS)}
_SHAPE_IDS = {s: i + 1 for i, s in enumerate(SHAPES)}
_MOTION_IDS = {m: i + 1 for i, m in enumerate(MOTIONS)}
_CAMERA_IDS = {c: i for i, c in enumerate(CAMERAS)}


def latent_frame_groups(num_frames: int, temporal_stride: int) -> list[list[int]]:
    """Pixel frames each latent frame of a causal VAE covers: [0], then runs of `temporal_stride`."""
    if (num_frames - 1) % temporal_stride:
        raise ValueError(f"{num_frames} frames is not 1 + {temporal_stride}k")
    return [[0]] + [list(range(1 + temporal_stride * k, 1 + temporal_stride * (k + 1))) for k in range((num_frames - 1) // temporal_stride)]


def _overlap_1d(lo: np.ndarray, hi: np.ndarray, cell_lo: np.ndarray, cell_hi: np.ndarray) -> np.ndarray:
    """Overlap length of intervals [lo, hi] (per frame, [F]) and cells [G] -> [F, G]."""
    return np.clip(np.minimum(hi[:, None], cell_hi[None]) - np.maximum(lo[:, None], cell_lo[None]), 0.0, None)


def token_labels(scene: Scene, clip: ClipSpec, token_px: tuple[int, int], temporal_stride: int = 4, frames_used: int | None = None) -> np.ndarray:
    """int64 [4, T', gh, gw]: colour, shape, motion and camera class of every token of a clip.

    `frames_used` (default: all) is how many of the clip's first frames the
    trainer takes: the tracks follow the whole clip, the labels only those frames.

    A token's object is the one whose bounding box (the renderer's track,
    camera included) covers most of the token, averaged over the token's
    frames, if it covers at least MIN_COVER of the token or of the object.
    """
    th, tw = token_px
    if clip.height % th or clip.width % tw:
        raise ValueError(f"clip {clip.height}x{clip.width} is not a whole number of {th}x{tw} tokens")
    groups = latent_frame_groups(clip.num_frames if frames_used is None else frames_used, temporal_stride)
    gh, gw = clip.height // th, clip.width // tw
    ys, xs = np.arange(gh) * th, np.arange(gw) * tw
    best = np.zeros((len(groups), gh, gw))
    owner = np.full((len(groups), gh, gw), -1)
    for k, obj in enumerate(scene.objects):
        track = object_track(obj, clip, scene.camera)
        half = track.side / 2.0
        ov_y = _overlap_1d(track.cy - half, track.cy + half, ys.astype(float), ys + float(th))  # [F, gh]
        ov_x = _overlap_1d(track.cx - half, track.cx + half, xs.astype(float), xs + float(tw))  # [F, gw]
        area = ov_y[:, :, None] * ov_x[:, None, :]  # [F, gh, gw]
        cover = np.maximum(area / (th * tw), area / np.maximum(track.side**2, 1e-6)[:, None, None])
        per_latent = np.stack([cover[g].mean(0) for g in groups])  # [T', gh, gw]
        take = (per_latent >= MIN_COVER) & (per_latent > best)
        best[take], owner[take] = per_latent[take], k
    labels = np.zeros((4, len(groups), gh, gw), dtype=np.int64)
    for k, obj in enumerate(scene.objects):
        mine = owner == k
        labels[0][mine] = _COLOR_IDS[obj.color]
        labels[1][mine] = _SHAPE_IDS[obj.shape]
        labels[2][mine] = _MOTION_IDS[obj.motion]
    labels[3] = _CAMERA_IDS[scene.camera]
    return labels


def clip_labels(
    scene: dict[str, Any] | None, clip: ClipSpec, bucket: tuple[int, int, int], bucket_fps: float, token_px: tuple[int, int], temporal_stride: int = 4
) -> np.ndarray:
    """Labels for one dataset clip as the trainer sees it: the first `bucket` (H, W, T) frames.

    All IGNORE when the clip has no scene, or when the trainer resizes or
    resamples it (the scene's coordinates would no longer match).
    """
    height, width, frames = bucket
    shape = (4, 1 + (frames - 1) // temporal_stride, height // token_px[0], width // token_px[1])
    if scene is None or (clip.height, clip.width) != (height, width) or clip.fps != bucket_fps or clip.num_frames < frames:
        return np.full(shape, IGNORE, dtype=np.int64)
    return token_labels(Scene.from_dict(scene), clip, token_px, temporal_stride, frames_used=frames)


def label_table(records: list[Any], clip_ids: dict[str, Any], fps: float, token_px: tuple[int, int], temporal_stride: int = 4) -> dict[str, Any]:
    """int8 [N, 4, T', gh, gw] per cache bucket, row for row with the latent cache.

    `records` are the dataset's ClipRecords in cache order (a row's clip id
    indexes them); a record's `scene` is its metadata scene, or None.
    """
    import torch

    from kinema.train.buckets import Bucket

    table = {}
    for key, ids in clip_ids.items():
        b = Bucket.from_key(key)
        rows = []
        for i in ids.tolist():
            r = records[i]
            rows.append(clip_labels(r.scene, ClipSpec(r.height, r.width, r.num_frames, r.fps), (b.height, b.width, b.num_frames), fps, token_px, temporal_stride))
        table[key] = torch.as_tensor(np.stack(rows), dtype=torch.int8)
    return table


def object_weights(labels: Any, patch: tuple[int, int], weight: float) -> Any:
    """Per-latent-cell loss weights [B, 1, T', h, w]: `weight` where a token covers an object, else 1.

    Why: a Shapes World latent is mostly background texture (an object covers
    11-19% of the tokens), so the plain velocity loss spends most of its
    gradient on texture the prompt does not describe. Tokens the scene marks
    as IGNORE count as background.
    """
    ph, pw = patch  # the DiT's spatial patch: a token is ph x pw latent cells of one latent frame
    occupied = (labels[:, :1] > 0).float()  # the colour group: > 0 where an object is
    w = 1.0 + (weight - 1.0) * occupied
    return w.repeat_interleave(ph, 3).repeat_interleave(pw, 4)


def scene_loss(logits: Any, labels: Any) -> Any:
    """Mean over label groups of the token-wise cross-entropy; IGNORE labels (and all-IGNORE groups) skipped.

    logits [B, NUM_CLASSES, T', gh, gw] as the DiT's scene head gives them; labels [B, 4, T', gh, gw].
    """
    import torch
    import torch.nn.functional as F

    losses = []
    start = 0
    for g, (_, n) in enumerate(GROUPS):
        target = labels[:, g].long()
        if bool((target != IGNORE).any()):
            losses.append(F.cross_entropy(logits[:, start : start + n].float(), target, ignore_index=IGNORE))
        start += n
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0
