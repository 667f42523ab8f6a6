"""Versioned prompt files (YAML) of the reasoning stage; loaded by `armdata.transforms.prompts`."""
