"""Generators shared by tests, benchmarks and the demo: synthetic RLDS/video/LeRobot data, tiny random-weight
models built from small configs."""
