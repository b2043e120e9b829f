"""The edges of the frame path shared by the ROS node and ``ivif replay`` (no ROS import).

- :mod:`.decode`: one received message -> a :class:`~ivif_fusion.types.Frame` or a counted drop.
- :mod:`.accounting`: pairing and what becomes of every emitted pair, balanced per stream.
- :mod:`.outputs`: output topics and the messages of each processed pair.
"""
