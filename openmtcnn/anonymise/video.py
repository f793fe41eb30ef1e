"""Videos in and out with PyAV: every frame decoded, edited upright and re-encoded; audio packets copied unchanged.

The output keeps the input's container, frame count, timestamps (so its frame rate and the
audio's sync), its audio streams as they were, container and stream metadata, and the display
rotation. It is written to a hidden file beside its name and takes that name when closed, so
a crash leaves no half file under it; a video that turns out damaged part-way still gets the
frames before the damage, closed properly (playable), and a ValueError naming the file.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from openmtcnn.progress import progress

# Encoder settings for near-transparent quality; other encoders get the input's bit rate.
ENCODER_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"},
                   "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}}
MAX_TIME_BASE = 65535  # MPEG-4 part 2 encoders refuse finer time bases

Edit = Callable[[int, float, np.ndarray], np.ndarray]  # edit(frame index, seconds, upright RGB) -> RGB of that size


def open_video(path: Path) -> av.container.InputContainer:
    """``path`` opened for reading; a file FFmpeg cannot read is a ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    try:
        return av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(f"{path}: could not open it as a video ({e.strerror or e}); "
                         "the file may be truncated, damaged or not a video") from None


def encoder_for(source: av.video.stream.VideoStream, container: av.container.OutputContainer) -> str:
    """The encoder for the input's codec when this FFmpeg has one the container takes, else the container's default."""
    name = source.codec_context.name
    if name not in container.supported_codecs:
        name = container.default_video_codec
    try:
        return av.codec.Codec(name, "w").name  # e.g. h264 -> libx264
    except Exception:  # no encoder for this codec here (e.g. a camera's proprietary one)
        return av.codec.Codec(container.default_video_codec, "w").name


def fraction(value) -> Fraction | None:
    """A PyAV rational (a Fraction, or an AVRational from PyAV 19 on) as a Fraction; None when unset or zero."""
    return Fraction(value.numerator, value.denominator) if value else None


def rotation_steps(frame: av.VideoFrame) -> int:
    """Quarter turns counterclockwise that show the frame upright (its display matrix)."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


class Writer:
    """The output video, set up at the first frame (its size and rotation), then frames and audio packets in order."""

    def __init__(self, path: Path, source: av.container.InputContainer, video: av.video.stream.VideoStream):
        self.path, self.source, self.source_video = path, source, video
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.container: av.container.OutputContainer | None = None
        self.video = None
        self.audio: dict[int, av.stream.Stream] = {}
        self.pending: list[av.Packet] = []  # audio that comes before the first frame
        self.rate, self.time_base, self.last_pts, self.frames = Fraction(25), Fraction(1, 25), -1, 0

    def start(self, first: av.VideoFrame) -> None:
        """Open the file and add the streams, in the input's order: the video re-encoded, audio as a template."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = self.container = av.open(str(self.tmp), "w")
        except av.FFmpegError as e:
            raise ValueError(f"{self.path}: cannot write a video here ({e.strerror or e})") from None
        out.metadata.update(self.source.metadata)
        src = self.source_video
        rate = self.rate = fraction(src.average_rate) or fraction(src.guessed_rate) or Fraction(25)
        tb = fraction(src.time_base)
        self.time_base = tb if tb and tb.denominator <= MAX_TIME_BASE else 1 / rate
        for s in self.source.streams:
            if s is src:
                self.video = self.add_video(out, first, rate)
            elif s.type == "audio":
                self.audio[s.index] = out.add_stream_from_template(s)
                self.audio[s.index].metadata.update(s.metadata)
        for packet in self.pending:
            self.copy(packet)
        self.pending = []

    def add_video(self, out: av.container.OutputContainer, first: av.VideoFrame, rate: Fraction):
        """The re-encoded video stream: the input's codec, size, pixel format, rotation and metadata."""
        src = self.source_video
        codec = encoder_for(src, out)
        stream = out.add_stream(codec, rate=rate, options=ENCODER_OPTIONS.get(codec, {}))
        stream.width, stream.height = first.width, first.height
        formats = [f.name for f in (stream.codec_context.codec.video_formats or [])]
        stream.pix_fmt = first.format.name if not formats or first.format.name in formats else formats[0]
        stream.time_base = stream.codec_context.time_base = self.time_base
        if codec not in ENCODER_OPTIONS and src.bit_rate:
            stream.bit_rate = src.bit_rate
        if fraction(src.sample_aspect_ratio):  # non-square pixels (anamorphic video)
            stream.codec_context.sample_aspect_ratio = fraction(src.sample_aspect_ratio)
        if rotation_steps(first) and hasattr(stream, "set_display_rotation"):  # PyAV 18 on
            stream.set_display_rotation(first.rotation)
        stream.metadata.update(src.metadata)
        return stream

    def copy(self, packet: av.Packet) -> None:
        """An audio packet, unchanged, into its stream of the output."""
        if self.container is None:
            self.pending.append(packet)
            return
        packet.stream = self.audio[packet.stream.index]
        self.container.mux(packet)

    def write(self, source: av.VideoFrame, rgb: np.ndarray) -> None:
        """One edited frame (stored orientation) at the source frame's time; an encoder's refusal names the output."""
        try:
            self.encode(source, rgb)
        except av.FFmpegError as e:
            raise ValueError(f"{self.path}: could not encode frame {self.frames} ({e.strerror or e})") from None

    def encode(self, source: av.VideoFrame, rgb: np.ndarray) -> None:
        if self.container is None:
            self.start(source)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if source.pts is not None and source.time_base:
            pts = round(source.pts * fraction(source.time_base) / self.time_base)
        else:
            pts = self.last_pts + max(1, round(1 / (self.rate * self.time_base)))
        frame.pts = self.last_pts = max(pts, self.last_pts + 1)  # strictly increasing, as encoders require
        frame.time_base = self.time_base
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the file's index; give it its name if it holds frames, else remove it."""
        if self.container is None:
            return
        try:
            if self.frames:
                self.container.mux(self.video.encode(None))
        finally:
            self.container.close()
            if self.frames:
                os.replace(self.tmp, self.path)
            elif self.tmp.exists():
                self.tmp.unlink()


def frames(container: av.container.InputContainer, video, audio: list, copy: Callable[[av.Packet], None]
           ) -> Iterator[av.VideoFrame]:
    """The video's frames in order; the audio packets in between go to ``copy``."""
    for packet in container.demux(video, *audio):
        if packet.stream.type == "video":
            yield from packet.decode()  # the last, empty packet flushes the decoder
        elif packet.dts is not None:
            copy(packet)


def edit_video(path: Path, out: Path | None, edit: Edit, show_progress: bool = True) -> int:
    """Run ``edit`` on every frame of ``path`` (upright), writing the results to ``out`` (None: read only); frames done.

    Raises ValueError naming the file when it cannot be read, holds no video frames, or ends
    before data its index lists (truncated); what was written until then is kept, playable.
    """
    container = open_video(path)
    try:
        if not container.streams.video:
            raise ValueError(f"{path}: holds no video frames (it has no video stream)")
        video, audio = container.streams.video[0], list(container.streams.audio)
        video.thread_type = "AUTO"
        writer = Writer(out, container, video) if out is not None else None
        done = 0
        try:
            for frame in progress(frames(container, video, audio, writer.copy if writer else lambda p: None),
                                  desc=path.name, total=video.frames or None, enable=show_progress, unit="frame"):
                k = rotation_steps(frame)
                seconds = frame.time if frame.time is not None else done / float(fraction(video.average_rate) or 25)
                edited = edit(done, seconds, np.rot90(frame.to_ndarray(format="rgb24"), k))
                if writer is not None:
                    writer.write(frame, np.ascontiguousarray(np.rot90(edited, -k)))
                done += 1
        except av.FFmpegError as e:
            raise ValueError(f"{path}: damaged after frame {done} ({e.strerror or e}){kept(out, done)}") from None
        finally:
            if writer is not None:
                writer.close()
        if done == 0:
            raise ValueError(f"{path}: holds no video frames that could be read")
        missing = past_the_end(video, path)
        if missing:
            raise ValueError(f"{path}: truncated: {missing} of the frames its index lists lie past the end of the "
                             f"file{kept(out, done)}")
        return done
    finally:
        container.close()


def past_the_end(video, path: Path) -> int:
    """How many of the video's indexed packets lie past the end of the file: a truncated download, not a bad header.

    Counting decoded frames against the header's count would not do: AVI headers may count one
    more, and MP4 edit lists may hide frames on purpose.
    """
    size = path.stat().st_size
    return sum(1 for e in getattr(video, "index_entries", None) or () if e.pos + e.size > size)


def kept(out: Path | None, done: int) -> str:
    """The part of an error message that says where the frames read before it went."""
    return f"; the {done} frames read are in {out}" if out is not None and done else ""
