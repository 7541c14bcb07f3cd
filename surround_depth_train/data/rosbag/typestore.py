"""The message types of one bag: rosbags' typestore of the bag's ROS distribution, plus what the bag defines.

``ros2 bag`` writes bags in several shapes, and each must read:

- Humble: sqlite3 (or MCAP with the plugin), metadata version 5, **no message definitions** in the bag: every type
  comes from rosbags' typestore of the distribution;
- Iron, Jazzy, Kilted: sqlite3 or MCAP, definitions stored per type (``.msg`` or ``.idl`` text), the distribution
  named in ``metadata.yaml`` from version 8 on;
- ROS 1 bags: definitions always stored.

The typestore is built as: the bag's own definitions first (the data was serialised with them), then every type of
the base store that the bag does not define. The base store is rosbags' store for the ``ros_distro`` the metadata
names, else Humble's (the most recorded release; the standard sensor types are the same in all of them), ROS 1
Noetic's for ROS 1 bags. A definition that does not parse, a type the store does not know (a custom message in a
bag without definitions), or one whose fields name an unknown type, is *undecodable*: :class:`BagTypes` names it
and its topics, and the reader skips those topics instead of refusing the bag. No rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ['BagTypes', 'open_reader', 'distro_store']

# ros_distro (as metadata.yaml writes it) -> rosbags store name; rolling and unknown names take the nearest known.
_DISTROS = ('foxy', 'galactic', 'humble', 'iron', 'jazzy', 'kilted', 'lyrical')
DEFAULT_DISTRO = 'humble'


def distro_store(ros_distro: str | None) -> tuple[str, Any]:
    """``(distribution, rosbags Typestore)`` for a bag's ``ros_distro`` (None or unknown: Humble; rolling: the
    newest store)."""
    from rosbags.typesys import Stores, get_typestore

    name = (ros_distro or '').strip().lower()
    if name == 'rolling':
        return 'rolling', get_typestore(Stores.LATEST)
    if name not in _DISTROS:
        name = DEFAULT_DISTRO
    return name, get_typestore(Stores(f'ros2_{name}'))


@dataclass
class BagTypes:
    """A typestore for one bag's connections, and the types in it that cannot be decoded.

    Attributes:
        store: a rosbags ``Typestore`` (``deserialize_cdr`` / ``deserialize_ros1``).
        source: where the standard types came from (``'ros2_humble typestore'``, ``'bag definitions + ...'``).
        undecodable: ``{msgtype: reason}`` for every type of the bag that cannot be decoded.
        ros1: the bag is a ROS 1 bag (messages are ROS 1 serialised).
    """

    store: Any
    source: str
    undecodable: dict[str, str] = field(default_factory=dict)
    ros1: bool = False

    def decodable(self, msgtype: str) -> bool:
        return msgtype not in self.undecodable

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> Any:
        return self.store.deserialize_ros1(raw, msgtype) if self.ros1 else self.store.deserialize_cdr(raw, msgtype)

    def describe_undecodable(self, topics: dict[str, str]) -> str:
        """``'/a (pkg/msg/T: reason), ...'`` for the topics (``{topic: msgtype}``) whose type is undecodable."""
        return ', '.join(f'{t} ({m}: {self.undecodable[m]})' for t, m in topics.items() if m in self.undecodable)


def _definition_types(connection: Any) -> dict:
    """The parse trees a connection's stored definition declares (empty when it stores none)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    msgdef = connection.msgdef
    if msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data:
        return {}
    if msgdef.format == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(msgdef.data, connection.msgtype))
    sep = '=' * 80 + '\n'
    types: dict = {}
    if msgdef.data.startswith(f'{sep}IDL: '):  # several .idl files concatenated, as rosbag2 stores them
        for part in msgdef.data.split(sep)[1:]:
            types.update(get_types_from_idl(part.split('\n', 1)[1]))
    else:
        types.update(get_types_from_idl(msgdef.data))
    return types


def build_types(connections: list[Any], *, ros_distro: str | None, ros1: bool = False) -> BagTypes:
    """The typestore for ``connections`` (module docstring)."""
    from rosbags.typesys import Stores, get_typestore

    if ros1:
        base_name, base = 'noetic', get_typestore(Stores.ROS1_NOETIC)
    else:
        base_name, base = distro_store(ros_distro)
    store = get_typestore(Stores.EMPTY)
    undecodable: dict[str, str] = {}
    defined = 0
    for conn in connections:
        if conn.msgtype in store.fielddefs or conn.msgtype in undecodable:
            continue
        try:
            types = _definition_types(conn)
            if types:
                store.register({k: v for k, v in types.items() if k not in store.fielddefs})
                defined += 1
        except Exception as exc:  # noqa: BLE001 - a definition rosbags cannot parse: that type alone is lost
            undecodable[conn.msgtype] = f'its stored definition does not parse ({type(exc).__name__})'
    if not store.fielddefs:  # nothing defined by the bag (Humble): the base store as it is
        store = base
    for name in base.fielddefs.keys() - store.fielddefs.keys():  # the classes are shared, not regenerated
        store.fielddefs[name] = base.fielddefs[name]
        store.types[name] = base.types[name]
    for conn in connections:
        if conn.msgtype in undecodable:
            continue
        if conn.msgtype not in store.fielddefs:
            undecodable[conn.msgtype] = f'not a standard {base_name} type and the bag stores no definition'
            continue
        try:
            store.get_msgdef(conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - a field of an unknown type: the message cannot be decoded
            undecodable[conn.msgtype] = f'a field has a type the bag does not define ({exc})'
    source = f'ros{1 if ros1 else 2}_{base_name} typestore' + (' + the bag\'s definitions' if defined else '')
    return BagTypes(store, source, undecodable, ros1)


def open_reader(path: Path) -> tuple[Any, BagTypes]:
    """Open ``path`` (a rosbag2 folder, an ``.mcap`` / ``.db3`` file or a ROS 1 ``.bag``) with rosbags; returns the
    open reader (``connections``, ``messages(connections, start, stop)``, ``close()``) and its :class:`BagTypes`.
    Raises what rosbags raises for a file it cannot open."""
    ros1 = path.suffix == '.bag'
    if ros1:
        from rosbags.rosbag1 import Reader
    else:
        from rosbags.rosbag2 import Reader
    reader = Reader(path)
    reader.open()
    try:
        distro = None if ros1 else getattr(reader, 'ros_distro', None)
        types = build_types(list(reader.connections), ros_distro=distro, ros1=ros1)
    except BaseException:
        reader.close()
        raise
    return reader, types
