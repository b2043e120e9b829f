"""Publishers and helpers for the live ROS 2 tests and the node benchmark."""
