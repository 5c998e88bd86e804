"""The finished MP4: H.264 video, AAC audio and a mov_text subtitle track, written in one pass, atomically.

Frames stream in one at a time; after each frame the audio up to that frame's
end time and the subtitle cues that have started are muxed too, so the
streams stay interleaved (players start at once and the muxer buffers
little) and every timestamp derives from one clock: video frame i lasts
[i/fps, (i+1)/fps), audio sample j sits at j/48000. The file is written to a
temporary name beside the target and renamed only when complete.

Two writers share that muxing: `FilmWriter` encodes frames itself;
`SegmentedFilmWriter` joins H.264 segments encoded earlier (see
`studio.segments`) by stream copy, so a re-render re-encodes only the
segments that changed.
"""

from __future__ import annotations

import uuid
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from kinema.errors import KinemaInputError
from kinema.studio.audio import SAMPLE_RATE
from kinema.studio.subtitles import MOV_TEXT_HEADER, mov_text_sample
from kinema.studio.timeline import Cue
from kinema.video.io import check_writable

AAC_FRAME = 1024  # samples per AAC frame
SUBTITLE_TIME_BASE = Fraction(1, 1000)


class _FilmMuxer:
    """The container, the audio and subtitle tracks, the one clock and the atomic rename; video comes from subclasses."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        audio: np.ndarray | None = None,
        audio_bitrate: int = 160_000,
        cues: list[Cue] | None = None,
        subtitle_language: str = "und",
    ) -> None:
        if Path(path).suffix.lower() != ".mp4":
            raise KinemaInputError(f"a film is written as .mp4, got {path}")
        if width % 2 or height % 2:
            raise KinemaInputError(f"H.264 (yuv420p) needs even width and height, got {width}x{height}")
        self.path = check_writable(path)
        self.width, self.height, self.fps = width, height, float(fps)
        self.rate = Fraction(self.fps).limit_denominator(1001)
        self._tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp"
        self._audio = None if audio is None else np.ascontiguousarray(audio, dtype=np.float32)
        self._cues = sorted(cues or [], key=lambda c: c.start)
        self._count = self._audio_pos = self._cue_pos = 0
        self._closed = False
        self._container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._video = self._add_video_stream()
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._container.add_stream("aac", rate=SAMPLE_RATE)
                self._audio_stream.layout = "stereo"
                self._audio_stream.bit_rate = audio_bitrate
            self._subs = None
            if self._cues:
                self._subs = self._container.add_stream("mov_text")
                self._subs.time_base = SUBTITLE_TIME_BASE
                self._subs.codec_context.subtitle_header = MOV_TEXT_HEADER.encode()
                self._subs.metadata["language"] = subtitle_language
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self) -> av.video.stream.VideoStream:
        raise NotImplementedError

    def _flush_video(self) -> None:
        """Mux whatever video the encoder still holds (nothing for stream copy)."""

    def _frame_done(self) -> None:
        """One more video frame is in: mux the audio and the cues up to its end, to keep the streams interleaved."""
        self._count += 1
        now = self._count / self.fps
        self._mux_audio(round(now * SAMPLE_RATE))
        self._mux_cues(now)

    def _mux_audio(self, until: int, final: bool = False) -> None:
        if self._audio is None or self._audio_stream is None:
            return
        end = self._audio.shape[1]
        while self._audio_pos < end and (self._audio_pos + AAC_FRAME <= until or final):
            chunk = self._audio[:, self._audio_pos : self._audio_pos + AAC_FRAME]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            af.sample_rate = SAMPLE_RATE
            af.pts = self._audio_pos
            af.time_base = Fraction(1, SAMPLE_RATE)
            for packet in self._audio_stream.encode(af):
                self._container.mux(packet)
            self._audio_pos += chunk.shape[1]

    def _mux_cues(self, now: float) -> None:
        while self._subs is not None and self._cue_pos < len(self._cues) and self._cues[self._cue_pos].start < now:
            cue = self._cues[self._cue_pos]
            start = round(cue.start * 1000)
            packet = av.Packet(mov_text_sample(cue.text))
            packet.stream = self._subs
            packet.pts = packet.dts = start
            packet.duration = max(1, round(cue.end * 1000) - start)
            packet.time_base = SUBTITLE_TIME_BASE
            self._container.mux(packet)
            self._cue_pos += 1

    def close(self) -> Path:
        if self._closed:
            return self.path
        try:
            if self._count == 0:
                raise KinemaInputError(f"no frames were written to {self.path}")
            self._flush_video()
            self._mux_audio(0, final=True)
            if self._audio_stream is not None:
                for packet in self._audio_stream.encode(None):
                    self._container.mux(packet)
            self._mux_cues(float("inf"))
            self._container.close()
            self._container = None
            self._tmp.replace(self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial file; the target is left untouched."""
        self._closed = True
        if getattr(self, "_container", None) is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is being discarded anyway
                pass
            self._container = None
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> _FilmMuxer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class FilmWriter(_FilmMuxer):
    """Encodes uint8 RGB frames with libx264 as they come."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        crf: int = 20,
        preset: str = "veryfast",
        b_frames: int | None = None,
        threads: int = 0,
        **tracks: Any,
    ) -> None:
        self._options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
        if b_frames is not None:
            self._options["bf"] = str(b_frames)
        super().__init__(path, width, height, fps, **tracks)

    def _add_video_stream(self) -> av.video.stream.VideoStream:
        video = self._container.add_stream("libx264", rate=self.rate)
        video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
        video.options = self._options
        return video

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 frame [H, W, 3]."""
        if self._closed:
            raise RuntimeError("write() on a closed FilmWriter")
        try:
            if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
                raise KinemaInputError(f"frame {frame.dtype} {list(frame.shape)} does not match the film's {self.width}x{self.height}")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self._count
            for packet in self._video.encode(vf):
                self._container.mux(packet)
            self._frame_done()
        except BaseException:
            self.abort()
            raise

    def _flush_video(self) -> None:
        for packet in self._video.encode(None):
            self._container.mux(packet)


class SegmentedFilmWriter(_FilmMuxer):
    """Joins H.264 segment files by stream copy, in order, with the film's audio and subtitles.

    The segments must come from `FilmWriter(..., b_frames=0)` with the same
    size, fps and encoder settings: their parameter sets (SPS/PPS) are then
    identical, each starts on a keyframe, and without B-frames a packet's
    decode order is its display order, so packet k of a segment that starts
    at film frame s simply becomes frame s + k. A segment whose parameter
    sets differ from the first's is refused rather than joined into a file
    that would not decode.
    """

    def __init__(self, path: str | Path, template: str | Path, width: int, height: int, fps: float, **tracks: Any) -> None:
        self._template = av.open(str(template))
        try:
            super().__init__(path, width, height, fps, **tracks)
        finally:
            self._extradata = self._template.streams.video[0].codec_context.extradata
            self._template.close()

    def _add_video_stream(self) -> av.video.stream.VideoStream:
        video = self._container.add_stream_from_template(self._template.streams.video[0])
        video.time_base = 1 / self.rate
        return video

    def append(self, segment: str | Path) -> int:
        """Copy every frame of one segment file to the film; returns how many frames it held."""
        if self._closed:
            raise RuntimeError("append() on a closed SegmentedFilmWriter")
        try:
            with av.open(str(segment)) as source:
                stream = source.streams.video[0]
                if stream.codec_context.extradata != self._extradata or (stream.width, stream.height) != (self.width, self.height):
                    raise ValueError(f"segment {segment} was encoded with other settings than the film's first segment")
                first = self._count
                for packet in source.demux(stream):
                    if packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    if packet.pts is None or round(packet.pts * stream.time_base * self.rate) != self._count - first:
                        raise ValueError(f"segment {segment} is not in display order (B-frames?) or has gaps")
                    packet.stream = self._video
                    packet.time_base = 1 / self.rate
                    packet.pts = packet.dts = self._count
                    packet.duration = 1
                    self._container.mux(packet)
                    self._frame_done()
            return self._count - first
        except BaseException:
            self.abort()
            raise


def stream_report(path: str | Path) -> dict[str, dict[str, float | int | str]]:
    """Start, end and packet count of every stream of a media file, in seconds from the stream timestamps.

    The end is the last packet's pts + duration (what a player shows last), so
    comparing the video's and audio's ends measures their drift.
    """
    out: dict[str, dict[str, float | int | str]] = {}
    with av.open(str(path)) as container:
        ends: dict[int, float] = {}
        starts: dict[int, float] = {}
        counts: dict[int, int] = {}
        for packet in container.demux():
            if packet.pts is None or packet.size == 0 and packet.stream.type != "subtitle":
                continue
            tb = packet.time_base
            start = float(packet.pts * tb)
            end = float((packet.pts + (packet.duration or 0)) * tb)
            i = packet.stream.index
            starts[i] = min(starts.get(i, start), start)
            ends[i] = max(ends.get(i, end), end)
            counts[i] = counts.get(i, 0) + 1
        for s in container.streams:
            key = s.type if s.type not in out else f"{s.type}{s.index}"
            out[key] = {
                "codec": s.codec_context.name,
                "start": starts.get(s.index, 0.0),
                "end": ends.get(s.index, 0.0),
                "packets": counts.get(s.index, 0),
                "stream_duration": float(s.duration * s.time_base) if s.duration is not None else float("nan"),
            }
    return out
