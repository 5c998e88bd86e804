"""Sound and the muxed file: music bed, narration, mixing, AAC + H.264 + mov_text in sync, .srt."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from kinema.errors import KinemaInputError
from kinema.studio.audio import (
    SAMPLE_RATE,
    fit_length,
    load_audio,
    mix_soundtrack,
    music_bed,
    narration_track,
)
from kinema.studio.mux import FilmWriter, SegmentedFilmWriter, stream_report
from kinema.studio.narration import EspeakVoice
from kinema.studio.storyboard import Music, Soundtrack
from kinema.studio.subtitles import to_srt, write_srt
from kinema.studio.timeline import Cue


class ToneVoice:
    """A stand-in voice: a 0.5 s tone per caption (so mixing is tested without a speech engine)."""

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        t = np.arange(8000) / 16000
        return (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000


def test_music_bed_is_exact_length_and_level() -> None:
    bed = music_bed(3.0, Music(volume=0.3, tempo=120))
    assert bed.shape == (2, 3 * SAMPLE_RATE)
    assert np.abs(bed).max() == pytest.approx(0.3, rel=1e-3)
    assert np.abs(bed[:, :100]).max() < 0.01  # fades in


def test_fit_length_trims_and_pads() -> None:
    x = np.ones((2, 1000), np.float32)
    assert fit_length(x, 1500)[:, 1000:].max() == 0
    trimmed = fit_length(x, 500)
    assert trimmed.shape == (2, 500) and trimmed[0, -1] < 0.1  # faded, no click


def test_narration_ducks_the_music_and_the_mix_has_the_film_length() -> None:
    cues = [Cue(0.5, 1.5, "one"), Cue(2.0, 3.0, "two")]
    mix = mix_soundtrack(Soundtrack(narration={}, music={}), cues, 3.25, voice=ToneVoice())
    assert mix.audio.shape == (2, round(3.25 * SAMPLE_RATE))
    assert np.abs(mix.audio).max() <= 0.98 + 1e-6
    track = narration_track(cues, mix.audio.shape[1], ToneVoice())
    assert track.speaking[int(0.6 * SAMPLE_RATE)] and not track.speaking[int(1.5 * SAMPLE_RATE)]


def test_espeak_speaks_english_and_japanese() -> None:
    for voice, text in (("en", "The red ball rolls away."), ("ja", "赤いボール")):
        samples, rate = EspeakVoice(voice).synthesize(text)
        assert rate > 8000
        assert 0.3 < samples.size / rate < 5.0
        assert np.abs(samples).max() > 0.05
    with pytest.raises(KinemaInputError, match="no voice 'xx-nope'"):
        EspeakVoice("xx-nope").synthesize("hi")


def test_soundtrack_file_is_loaded_and_resampled(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((np.sin(np.arange(22050) / 22050 * 2 * np.pi * 440) * 10000).astype("<i2").tobytes())
    audio = load_audio(path)
    assert audio.shape[0] == 2 and abs(audio.shape[1] - SAMPLE_RATE) < 200
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"nothing")
    with pytest.raises(KinemaInputError, match=f"cannot read audio from {bad}"):
        load_audio(bad)


def test_srt_format(tmp_path: Path) -> None:
    cues = [Cue(0.0, 1.5, "hello"), Cue(61.25, 3723.5, "日本語")]
    assert to_srt(cues) == "1\n00:00:00,000 --> 00:00:01,500\nhello\n\n2\n00:01:01,250 --> 01:02:03,500\n日本語\n"
    p = write_srt(tmp_path / "film.srt", cues)
    assert p.read_text(encoding="utf-8") == to_srt(cues)


def _write(path: Path, seconds: float, fps: float, cues: list[Cue]) -> None:
    n = round(seconds * fps)
    audio = np.zeros((2, round(n / fps * SAMPLE_RATE)), np.float32)
    audio[:, ::100] = 0.1
    with FilmWriter(path, 32, 18, fps, audio=audio, cues=cues) as w:
        for i in range(n):
            w.write(np.full((18, 32, 3), i % 255, np.uint8))


def test_muxed_film_has_video_audio_and_soft_subtitles_in_sync(tmp_path: Path) -> None:
    path = tmp_path / "film.mp4"
    cues = [Cue(0.25, 1.0, "hello"), Cue(1.5, 2.5, "赤いボール")]
    _write(path, 3.0, 24, cues)
    report = stream_report(path)
    assert report["video"]["codec"] == "h264" and report["audio"]["codec"] == "aac" and report["subtitle"]["codec"] == "mov_text"
    assert report["video"]["end"] == pytest.approx(3.0, abs=1e-6)
    assert abs(report["audio"]["end"] - report["video"]["end"]) < 1 / 24
    with av.open(str(path)) as c:
        texts = [bytes(p)[2:].decode() for p in c.demux(c.streams.subtitles[0]) if p.size > 2]
        assert texts == ["hello", "赤いボール"]
        assert c.streams.video[0].frames == 72


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "film.mp4"
    with pytest.raises(KinemaInputError), FilmWriter(path, 32, 18, 24) as w:
        w.write(np.zeros((18, 32, 3), np.uint8))
        w.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_segments_join_by_stream_copy_into_one_synced_film(tmp_path: Path) -> None:
    fps, sizes = 24, [10, 7, 31]
    segments, start = [], 0
    for k, n in enumerate(sizes):
        segments.append(tmp_path / f"seg{k}.mp4")
        with FilmWriter(segments[-1], 32, 18, fps, b_frames=0) as w:
            for i in range(start, start + n):
                w.write(np.full((18, 32, 3), (i * 5) % 255, np.uint8))
        start += n
    audio = np.zeros((2, round(start / fps * SAMPLE_RATE)), np.float32)
    path = tmp_path / "film.mp4"
    with SegmentedFilmWriter(path, segments[0], 32, 18, fps, audio=audio, cues=[Cue(0.5, 1.5, "hi")]) as w:
        assert [w.append(s) for s in segments] == sizes
    report = stream_report(path)
    assert report["video"]["end"] == pytest.approx(start / fps, abs=1e-6)
    assert abs(report["audio"]["end"] - report["video"]["end"]) < 1 / fps
    with av.open(str(path)) as c:
        levels = [int(np.asarray(f.to_ndarray(format="rgb24")).mean().round()) for f in c.decode(video=0)]
    assert len(levels) == start
    assert np.abs(np.array(levels) - [(i * 5) % 255 for i in range(start)]).max() <= 3  # frame i is frame i


def test_segments_with_other_settings_are_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for path, crf in ((a, 20), (b, 35)):
        with FilmWriter(path, 32, 18, 24, b_frames=0, crf=crf) as w:
            for _ in range(4):
                w.write(np.zeros((18, 32, 3), np.uint8))
    film = tmp_path / "film.mp4"
    with pytest.raises(ValueError, match="other settings"), SegmentedFilmWriter(film, a, 32, 18, 24) as w:
        w.append(a)
        w.append(b)
    assert not film.exists() and not list(tmp_path.glob(".film.mp4.*"))
