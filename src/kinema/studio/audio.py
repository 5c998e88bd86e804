"""The film's sound: a soundtrack file and/or generated narration and music bed, mixed to one track.

Everything is float32 stereo [2, N] at `SAMPLE_RATE`, and the mix is exactly
`round(duration * SAMPLE_RATE)` samples long: the film's length, so sound
and picture end together. Narration of a caption starts at the caption's
start; the music bed ducks under it. The mix is scaled down (never clipped)
if it would exceed full scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from kinema.errors import KinemaInputError
from kinema.studio.narration import EspeakVoice, Voice
from kinema.studio.storyboard import Music, Soundtrack
from kinema.studio.timeline import Cue

SAMPLE_RATE = 48_000
EDGE_FADE_S = 0.02  # fades at cut points, so trims and pads never click
DUCK_GAIN = 0.35  # music level while someone speaks
PEAK = 0.98

_NOTE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Scale degrees (semitones from the key's root) of the chord roots: I-V-vi-IV / i-VI-III-VII.
_PROGRESSIONS = {"major": ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")), "minor": ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj"))}
_TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}


def _frames_to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    arrays = [f.to_ndarray() for f in frames if f.samples]
    if not arrays:
        return np.zeros((2, 0), np.float32)
    return np.concatenate(arrays, axis=1).astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Mono [N] or stereo [2, N] float32 -> stereo [2, M] at `target` (FFmpeg's resampler, band-limited)."""
    x = np.atleast_2d(np.asarray(samples, np.float32))
    if x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    if rate == target:
        return x[:2].copy()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:2]), format="fltp", layout="stereo")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=target)
    return _frames_to_array(resampler.resample(frame) + resampler.resample(None))


def load_audio(path: str | Path) -> np.ndarray:
    """Any audio (or video with sound) file FFmpeg reads -> stereo float32 [2, N] at SAMPLE_RATE."""
    p = Path(path)
    if not p.is_file():
        raise KinemaInputError(f"soundtrack.file: file not found: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise KinemaInputError(f"soundtrack.file: {p} has no audio stream")
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
            frames: list[av.AudioFrame] = []
            for frame in container.decode(audio=0):
                frames.extend(resampler.resample(frame))
            frames.extend(resampler.resample(None))
    except av.FFmpegError as e:
        raise KinemaInputError(f"soundtrack.file: cannot read audio from {p}: {e}") from None
    return _frames_to_array(frames)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Exactly n samples: trimmed (with a short fade-out) or padded with silence."""
    out = np.zeros((2, n), np.float32)
    m = min(n, audio.shape[1])
    out[:, :m] = audio[:, :m]
    if audio.shape[1] > n:
        fade = min(m, int(EDGE_FADE_S * SAMPLE_RATE))
        if fade:
            out[:, m - fade : m] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def music_bed(seconds: float, music: Music, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Soft chords, one per bar, looping a four-chord progression; 1 s fades at both ends. Peak = volume."""
    n = max(1, round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    bar = 4 * 60.0 / music.tempo
    root = 48 + _NOTE[music.key]  # MIDI note of the key's root, C3 for C
    out = np.zeros(n, np.float64)
    progression = _PROGRESSIONS[music.mode]
    bars = int(np.ceil(seconds / bar))
    attack, release = min(0.3, bar / 4), min(0.8, bar / 2)
    for b in range(bars):
        start, end = b * bar, min(seconds, (b + 1) * bar + release)
        i0, i1 = int(start * rate), min(n, int(end * rate))
        if i0 >= i1:
            continue
        tt = t[i0:i1] - start
        env = np.minimum(1.0, tt / attack) * np.clip((bar + release - tt) / release, 0.0, 1.0)
        degree, quality = progression[b % len(progression)]
        notes = [root + degree + iv for iv in _TRIADS[quality]] + [root + degree - 12]  # triad + bass
        for k, note in enumerate(notes):
            f = 440.0 * 2 ** ((note - 69) / 12)
            amp = 0.5 if k == len(notes) - 1 else 0.3
            out[i0:i1] += amp * env * (np.sin(2 * np.pi * f * tt) + 0.2 * np.sin(4 * np.pi * f * tt))
    fade = min(n // 2, rate)
    out[:fade] *= np.linspace(0.0, 1.0, fade)
    out[n - fade :] *= np.linspace(1.0, 0.0, fade)
    peak = np.abs(out).max()
    if peak > 0:
        out *= music.volume / peak
    return np.stack([out, out]).astype(np.float32)


@dataclass
class NarrationTrack:
    audio: np.ndarray  # stereo [2, N]
    speaking: np.ndarray  # bool [N]: where a voice is heard (for ducking)
    warnings: list[str] = field(default_factory=list)


def narration_track(cues: list[Cue], n: int, voice: Voice, volume: float = 1.0) -> NarrationTrack:
    """Each caption spoken from its start; speech running past the next caption's start is reported."""
    audio = np.zeros((2, n), np.float32)
    speaking = np.zeros(n, bool)
    warnings = []
    for k, cue in enumerate(cues):
        samples, rate = voice.synthesize(cue.text)
        if samples.size == 0:
            continue
        speech = resample(samples, rate) * volume
        i0 = round(cue.start * SAMPLE_RATE)
        i1 = min(n, i0 + speech.shape[1])
        if i0 >= n:
            continue
        audio[:, i0:i1] += speech[:, : i1 - i0]
        speaking[i0:i1] = True
        end = cue.start + speech.shape[1] / SAMPLE_RATE
        limit = cues[k + 1].start if k + 1 < len(cues) else n / SAMPLE_RATE
        if end > limit + 0.05:
            warnings.append(f"narration of {cue.text[:30]!r} lasts {end - cue.start:.1f} s and runs {end - limit:.1f} s into what follows")
    return NarrationTrack(audio, speaking, warnings)


def _duck_envelope(speaking: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """1 where silent, DUCK_GAIN under speech, with 0.15 s ramps (a moving average of the gate)."""
    gain = np.where(speaking, DUCK_GAIN, 1.0).astype(np.float64)
    width = int(0.15 * rate)
    if width > 1 and speaking.any():
        padded = np.pad(gain, (width // 2, width - width // 2 - 1), mode="edge")
        csum = np.concatenate([[0.0], np.cumsum(padded)])
        gain = (csum[width:] - csum[:-width]) / width  # moving average in O(N)
    return gain.astype(np.float32)


@dataclass
class Mix:
    audio: np.ndarray  # stereo float32 [2, N]
    warnings: list[str] = field(default_factory=list)


def mix_soundtrack(soundtrack: Soundtrack, cues: list[Cue], seconds: float, voice: Voice | None = None) -> Mix:
    """The whole film's audio: exactly round(seconds * SAMPLE_RATE) samples."""
    n = max(1, round(seconds * SAMPLE_RATE))
    bed = np.zeros((2, n), np.float32)
    if soundtrack.file is not None:
        bed = fit_length(load_audio(soundtrack.file), n) * soundtrack.volume
    elif soundtrack.music is not None:
        bed = music_bed(n / SAMPLE_RATE, soundtrack.music)
    warnings: list[str] = []
    total = bed
    if soundtrack.narration is not None and cues:
        narration = soundtrack.narration
        track = narration_track(cues, n, voice or EspeakVoice(narration.voice, narration.rate), narration.volume)
        total = bed * _duck_envelope(track.speaking) + track.audio
        warnings += track.warnings
    peak = float(np.abs(total).max()) if total.size else 0.0
    if peak > PEAK:
        total = total * (PEAK / peak)
    return Mix(total.astype(np.float32), warnings)
