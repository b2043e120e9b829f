"""Input/output at the message boundary: sensor_msgs/vision_msgs conversion (messages.py) and bags.

Nothing here imports ROS: message objects are duck-typed and builders take message classes.
"""
