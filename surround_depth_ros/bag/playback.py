"""What a replay publishes and when (no rclpy): topic selection, remapping, message classes, recorded timing.

A rosbag2 holds CDR bytes, which is what an rclpy publisher sends as a serialised message, so replay publishes the
stored bytes unchanged (no deserialisation). A topic can be published only where its message package is installed
(``importlib`` finds ``<pkg>.msg.<Name>``); the others (e.g. ``tf2_msgs``, which has no wheel on the registry) are
listed once and skipped. Message ``i`` goes out ``(t_i - t_0) / rate`` seconds after the start of its pass, with
``t`` the recording (log) time, as ``ros2 bag play`` does.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from surround_depth_train.data.rosbag.reader import BagInputError, BagTopic, describe_topics

__all__ = ['PlaybackTopic', 'message_class', 'parse_remaps', 'Playback']


def message_class(msgtype: str) -> type | None:
    """The installed Python class of ``pkg/msg/Name`` (None when the package is not installed here)."""
    parts = msgtype.split('/')
    if len(parts) != 3:
        return None
    try:
        return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])
    except (ImportError, AttributeError):
        return None


def parse_remaps(remaps: Sequence[str]) -> dict[str, str]:
    """``['/a:=/b', ...]`` -> ``{'/a': '/b'}``; a malformed rule raises ``ValueError`` naming it."""
    out = {}
    for rule in remaps:
        src, sep, dst = rule.partition(':=')
        if not sep or not src.startswith('/') or not dst.startswith('/'):
            raise ValueError(f'--remap {rule!r}: expected /from:=/to (absolute topic names)')
        out[src] = dst
    return out


@dataclass
class PlaybackTopic:
    """One recorded topic: where it goes out, its class, and the QoS it was offered with."""

    name: str
    out_name: str
    msgtype: str
    count: int
    cls: type | None
    transient_local: bool = False
    depth: int = 10


class Playback:
    """A rosbag2 opened for replay.

    Args:
        path: the bag (a rosbag2 folder or an ``.mcap`` / ``.db3`` file).
        topics: only these recorded topics (default: all).
        remaps: recorded name -> published name.
    """

    def __init__(self, path: str | os.PathLike, topics: Sequence[str] | None = None,
                 remaps: dict[str, str] | None = None):
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise BagInputError(f'bag {str(self.path)!r} does not exist; pass a rosbag2 folder (with metadata.yaml)')
        if self.path.suffix == '.bag':
            raise BagInputError(f'{self.path} is a ROS 1 bag; convert it with `rosbags-convert` first')
        try:  # Reader() itself refuses a folder without metadata.yaml and unknown file types
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds for damaged files
            raise BagInputError(f'bag {str(self.path)!r} cannot be opened ({type(exc).__name__}: {exc}); it is '
                                f'truncated or damaged, or not a rosbag2: pass the folder `ros2 bag record` '
                                f'wrote (with metadata.yaml), or an .mcap / .db3 file') from None
        recorded: dict[str, BagTopic] = {}
        for conn in self._reader.connections:
            recorded[conn.topic] = BagTopic(conn.topic, conn.msgtype, conn.msgcount)
        unknown = sorted(set(topics or ()) - set(recorded))
        if unknown:
            self.close()
            raise BagInputError(f'--topics {unknown} are not in the bag {str(self.path)!r}; it has: '
                                f'{describe_topics(recorded)}')
        remaps = remaps or {}
        self.topics: dict[str, PlaybackTopic] = {}
        for conn in self._reader.connections:
            if topics and conn.topic not in topics:
                continue
            qos = (getattr(conn.ext, 'offered_qos_profiles', None) or [None])[0]
            transient = qos is not None and getattr(qos.durability, 'name', '') == 'TRANSIENT_LOCAL'
            depth = int(getattr(qos, 'depth', 10) or 10) if qos is not None else 10
            self.topics[conn.topic] = PlaybackTopic(conn.topic, remaps.get(conn.topic, conn.topic), conn.msgtype,
                                                    conn.msgcount, message_class(conn.msgtype), transient, depth)
        if not self.topics:
            self.close()
            raise BagInputError(f'bag {str(self.path)!r} holds no messages to replay')

    @property
    def playable(self) -> list[PlaybackTopic]:
        return [t for t in self.topics.values() if t.cls is not None]

    @property
    def skipped(self) -> list[PlaybackTopic]:
        return [t for t in self.topics.values() if t.cls is None]

    @property
    def count(self) -> int:
        return sum(t.count for t in self.playable)

    def messages(self) -> Iterator[tuple[str, int, bytes]]:
        """``(recorded topic, log time ns, CDR bytes)`` of the playable topics, in recording order."""
        names = {t.name for t in self.playable}
        conns = [c for c in self._reader.connections if c.topic in names]
        done = 0
        try:
            for conn, ns, raw in self._reader.messages(connections=conns):
                done += 1
                yield conn.topic, int(ns), bytes(raw)
        except Exception as exc:  # noqa: BLE001 - see __init__
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise BagInputError(f'bag {str(self.path)!r} is truncated or damaged: reading stopped after {done} '
                                f'messages ({type(exc).__name__}); re-record or re-convert it') from None

    def close(self) -> None:
        if getattr(self, '_reader', None) is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - a damaged bag may fail to close; nothing is left to do
                pass
            self._reader = None

    def __enter__(self) -> 'Playback':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
