"""ROS 2 bags without ROS: read and write with ``rosbags`` (sqlite3 and MCAP).

- :func:`typestore` is the ROS 2 Humble typestore plus the vision_msgs 4.x types registered from
  this package's ``msg/*.msg`` files (so Detection2DArray is written with its definition inside
  the bag, and any rosbags / ROS 2 reader can decode it).
- :class:`BagWriter` writes messages (rosbags message objects) to a new bag.
- :class:`BagReader` opens a bag (directory, ``.db3`` or ``.mcap``) and yields messages in log-time
  order; messages that fail to deserialize are yielded with their error instead of aborting, so
  the caller can account for them. Problems with the file itself raise :class:`BagError`
  subclasses with a one-line reason.

Headers and stamps of messages are built and read by :mod:`ivif_fusion.io.messages`
(``make_header(classes[HEADER], classes[TIME], ...)``, ``stamp_ns``); bags with injected faults
are made by :mod:`ivif_fusion.io.fault_bag`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UserError

THERMAL_TOPIC = "/thermal/image"
RGB_TOPIC = "/rgb/image"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"
IMAGE_TYPES = (IMAGE, COMPRESSED)


class BagError(UserError):
    """A bag cannot be used (base class)."""


class BagOpenError(BagError):
    """The bag cannot be opened: missing, not a ROS 2 bag, truncated or corrupt."""


class BagReadError(BagError):
    """The bag broke while reading (truncated or corrupt storage)."""


class BagTopicError(BagError):
    """A required topic is missing from the bag."""


class BagTypeError(BagError):
    """A topic carries a message type that cannot be used here."""


class BagWriteError(BagError):
    """The output bag cannot be written (exists already, bad folder)."""


# --------------------------------------------------------------------------- typestore


def msg_dir() -> Path:
    """Folder of this package's ``.msg`` definitions (source checkout or ROS install)."""
    from ..paths import SHARE_DIR

    return SHARE_DIR / "msg"


@lru_cache(maxsize=1)
def typestore():  # noqa: ANN201 - rosbags Typestore
    """ROS 2 Humble types plus vision_msgs (from ``msg/*.msg``)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict = {}
    folder = msg_dir()
    files = sorted(folder.glob("*.msg"))
    if not files:
        raise BagError(f"no vision_msgs .msg definitions found in {folder}")
    for f in files:
        types.update(get_types_from_msg(f.read_text(), f"vision_msgs/msg/{f.stem}"))
    store.register(types)
    return store


def msg_class(msgtype: str):  # noqa: ANN201
    """rosbags message class of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
    return typestore().types[msgtype]


# --------------------------------------------------------------------------- writing


def _plugin(storage: str):  # noqa: ANN202
    from rosbags.rosbag2 import StoragePlugin

    try:
        return {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    except KeyError:
        raise BagWriteError(f"unknown bag storage '{storage}' (use sqlite3 or mcap)") from None


class BagWriter:
    """Writes rosbags message objects to a new ROS 2 bag (context manager).

    Args:
        path: bag directory to create (must not exist).
        storage: ``sqlite3`` or ``mcap``.
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3") -> None:
        from rosbags.rosbag2 import Writer, WriterError

        self.path = Path(path)
        if self.path.exists():
            raise BagWriteError(f"{self.path} exists already; remove it or choose another output")
        self.storage = storage
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=_plugin(storage))
        except WriterError as e:
            raise BagWriteError(f"cannot write bag {self.path}: {e}") from e
        self._conns: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except Exception as e:  # noqa: BLE001 - permission / missing parent folder
            raise BagWriteError(f"cannot create bag {self.path}: {e}") from e
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic (idempotent)."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._types[topic] = msgtype
            self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, msg: Any) -> None:
        """Serialize and write one message; the topic is declared on first use."""
        msgtype = msg.__msgtype__
        self.add_topic(topic, msgtype)
        if self._types[topic] != msgtype:
            raise BagWriteError(f"topic {topic} is {self._types[topic]}, cannot write a {msgtype}")
        self.write_raw(topic, log_time_ns, bytes(typestore().serialize_cdr(msg, msgtype)))

    def write_raw(self, topic: str, log_time_ns: int, data: bytes) -> None:
        """Write already serialized (CDR) bytes on a declared topic."""
        self._writer.write(self._conns[topic], int(log_time_ns), data)
        self.counts[topic] += 1


# --------------------------------------------------------------------------- reading


@dataclass
class BagMessage:
    """One message of a bag: ``msg`` is None when it failed to deserialize (``error`` says why)."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any = None
    error: str = ""


@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    count: int


_OPEN_ERRORS: tuple = (sqlite3.Error, KeyError, ValueError, EOFError, OSError, AssertionError, IndexError)


def _open_error_types() -> tuple:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    extra: tuple = ()
    try:  # rosbags reads sqlite3 bags through apsw, whose errors do not derive from sqlite3.Error
        import apsw

        extra = (apsw.Error,)
    except ImportError:
        pass
    return (AnyReaderError, ReaderError, *extra, *_OPEN_ERRORS)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


class BagReader:
    """Opens a ROS 2 bag (folder with metadata.yaml, or a single ``.db3`` / ``.mcap`` file).

    Use as a context manager; :meth:`messages` yields :class:`BagMessage` in log-time order.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagOpenError(f"bag {self.path} not found")
        self._reader = None

    def __enter__(self) -> BagReader:
        from rosbags.highlevel import AnyReader

        errors = _open_error_types()
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            files = sorted(p.name for p in self.path.iterdir())[:5]
            raise BagOpenError(f"{self.path} is not a ROS 2 bag: no metadata.yaml (found {files})")
        if self.path.is_file() and self.path.suffix not in (".db3", ".mcap"):
            raise BagOpenError(f"{self.path} is not a ROS 2 bag (expected a bag folder, .db3 or .mcap)")
        try:
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
        except errors as e:
            raise BagOpenError(f"cannot open bag {self.path}: {_reason(e)} (truncated or corrupt file?)") from e
        self._reader = reader
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - closing a broken bag must not hide the first error
                pass
            self._reader = None

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> type and message count (from the bag's index)."""
        out: dict[str, TopicInfo] = {}
        for c in self._reader.connections:
            info = out.setdefault(c.topic, TopicInfo(c.topic, c.msgtype, 0))
            info.count += c.msgcount
        return out

    def require(self, topic: str, allowed: Sequence[str], what: str) -> TopicInfo:
        """The topic's info, or a clear error when it is missing or of an unusable type."""
        topics = self.topics
        if topic not in topics:
            have = ", ".join(f"{t} [{i.msgtype}]" for t, i in sorted(topics.items())) or "none"
            raise BagTopicError(f"{what} topic '{topic}' not in bag {self.path}; topics in the bag: {have} "
                                f"(set replay.{what}_topic in the config or --set replay.{what}_topic=...)")
        info = topics[topic]
        if info.msgtype not in allowed:
            raise BagTypeError(f"{what} topic '{topic}' carries {info.msgtype}; expected one of {list(allowed)}")
        return info

    def messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """Messages of ``topics`` in log-time order.

        A message that cannot be deserialized is yielded with ``msg=None`` and ``error``; a
        storage failure (truncated file) raises :class:`BagReadError` saying how far it got.
        """
        reader = self._reader
        conns = [c for c in reader.connections if c.topic in set(topics)]
        if not conns:
            return
        n = 0
        it = reader.messages(connections=conns)
        while True:
            try:
                conn, t, raw = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - any storage failure here means the file is damaged
                raise BagReadError(f"bag {self.path} is unreadable after {n} message(s): {_reason(e)} "
                                   "(truncated or corrupt file?)") from e
            n += 1
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as e:  # noqa: BLE001 - a damaged message is accounted, not fatal
                yield BagMessage(conn.topic, conn.msgtype, t, None, f"cannot deserialize: {_reason(e)}")
                continue
            yield BagMessage(conn.topic, conn.msgtype, t, msg)


def read_all(path: str | Path, topics: Sequence[str] | None = None) -> list[BagMessage]:
    """Every message of ``topics`` (default: all) of a bag, in log-time order (tests, inspection)."""
    with BagReader(path) as r:
        names = list(r.topics) if topics is None else list(topics)
        return list(r.messages(names))
