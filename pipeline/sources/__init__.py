"""Sources of the Beam job: RLDS/TFDS (TFRecord reader), LeRobot; planned on the launcher, read on workers."""
