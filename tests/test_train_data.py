"""A user's own footage (mp4s + metadata.csv) goes through the same data path."""

import json

import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.train.data import assign_buckets, load_clip, read_metadata, resize_crop
from kinema.video.io import write_video


def _clip(t, h, w, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(1, h, w, 3), dtype=np.uint8)
    return np.repeat(base, t, axis=0)


@pytest.fixture
def user_dir(tmp_path):
    write_video(_clip(30, 96, 160, 0), tmp_path / "wide.mp4", fps=24.0)  # 1.25 s of 24 fps landscape
    write_video(_clip(20, 128, 64, 1), tmp_path / "tall.mp4", fps=8.0)
    write_video(_clip(3, 64, 64, 2), tmp_path / "short.mp4", fps=8.0)
    (tmp_path / "metadata.csv").write_text('video,caption\nwide.mp4,"a wide, shot"\ntall.mp4,a tall shot\nshort.mp4,too short\n')
    return tmp_path


def test_csv_of_user_videos_is_probed_bucketed_and_loaded(user_dir):
    records = read_metadata(user_dir)
    assert [r.captions for r in records] == [["a wide, shot"], ["a tall shot"], ["too short"]]
    wide = records[0]
    assert (wide.height, wide.width, wide.num_frames) == (96, 160, 30) and wide.fps == pytest.approx(24.0)
    kept = assign_buckets(records, [[64, 64], [64, 112], [112, 64]], [1, 5, 9, 17], 8.0)
    assert [r.video.name for r in kept] == ["wide.mp4", "tall.mp4", "short.mp4"]
    assert [r.bucket.key for r in kept] == ["64x112x9", "112x64x17", "64x64x1"]
    frames = load_clip(kept[0], 8.0)
    assert frames.shape == (9, 64, 112, 3) and frames.dtype == np.uint8
    assert load_clip(kept[1], 8.0).shape == (17, 112, 64, 3)


def test_a_moved_dataset_keeps_its_cache_key_and_an_edited_one_does_not(user_dir, tmp_path_factory):
    """The latent and caption caches key on the clips as the metadata names them, so a dataset copied or
    linked into another run directory reuses its caches instead of encoding everything again."""
    import shutil

    from kinema.train.latents import records_digest

    def digest(d):
        return records_digest(assign_buckets(read_metadata(d), [[64, 64]], [1, 5], 8.0))

    moved = tmp_path_factory.mktemp("elsewhere") / "dataset"
    shutil.copytree(user_dir, moved)
    assert digest(moved) == digest(user_dir)
    (moved / "metadata.csv").write_text('video,caption\nwide.mp4,"a wide, shot"\ntall.mp4,a tall shot\nshort.mp4,too short!\n')
    assert digest(moved) != digest(user_dir)
    (moved / "metadata.csv").write_text('video,caption\ntall.mp4,"a wide, shot"\nwide.mp4,a tall shot\nshort.mp4,too short\n')
    assert digest(moved) != digest(user_dir)


def test_clips_too_short_for_every_bucket_are_dropped(user_dir):
    kept = assign_buckets(read_metadata(user_dir), [[64, 64]], [9, 17], 8.0)
    assert "short.mp4" not in [r.video.name for r in kept] and len(kept) == 2


def test_jsonl_captions_list_and_missing_file(tmp_path):
    write_video(_clip(9, 32, 32, 0), tmp_path / "a.mp4", fps=8.0)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "a.mp4", "captions": ["x", "y"]}) + "\n")
    assert read_metadata(tmp_path)[0].captions == ["x", "y"]
    assert read_metadata(tmp_path)[0].signal_captions == []
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "a.mp4", "captions": ["x pans"], "camera": "pan left", "captions_without_camera": ["x"]}) + "\n")
    assert read_metadata(tmp_path)[0].signal_captions == ["x"]
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "a.mp4", "captions": ["x"], "captions_without_camera": [""]}) + "\n")
    with pytest.raises(KinemaInputError, match="captions_without_camera"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "missing.mp4", "caption": "x"}) + "\n")
    with pytest.raises(KinemaInputError, match="not found"):
        read_metadata(tmp_path)


def test_no_metadata_and_bad_csv(tmp_path):
    with pytest.raises(KinemaInputError, match="metadata"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.csv").write_text("file,text\n")
    with pytest.raises(KinemaInputError, match="video,caption"):
        read_metadata(tmp_path)


def test_resize_crop_covers_then_centre_crops():
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, 20:60] = 255  # a bright centre band survives the centre crop
    out = resize_crop(frames, 32, 32)
    assert out.shape == (2, 32, 32, 3)
    assert out[:, :, 8:24].min() > 200


def test_captions_are_encoded_in_batches_of_similar_length_and_come_back_in_order():
    """encode_captions: each row is that caption's own states, and batches hold captions of similar length
    (a batch is padded to its longest caption, so dataset order spent half the work on padding)."""
    import torch

    from kinema.models.text import HashTextEncoder
    from kinema.train.latents import encode_captions

    encoder = HashTextEncoder(dim=8)
    widths = []
    real = encoder.encode
    encoder.encode = lambda batch: (widths.append(max(encoder.count_tokens(c) for c in batch)), real(batch))[1]
    captions = ["", "a very long caption with many many words in it", "a ball", "two red squares", "a b c d e f g h i j", "x"]
    hidden, lengths = encode_captions(encoder, captions, batch_size=2)
    assert widths == sorted(widths) and len(widths) == 3
    assert sum(w * 2 for w in widths) < sum(max(encoder.count_tokens(c) for c in captions[s : s + 2]) * 2 for s in range(0, 6, 2))
    for i, caption in enumerate(captions):
        alone, mask = real([caption])
        n = int(mask.sum())
        assert int(lengths[i]) == n
        torch.testing.assert_close(hidden[i, :n], alone[0, :n].half())
        assert hidden[i, n:].abs().sum().item() == 0  # padding past its own length
