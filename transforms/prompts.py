"""Versioned prompt files of the reasoning stage (`prompts/*.yaml`, shipped as package data).

Each file has `version` and its templates (Python `str.format` fields). `load_prompt` returns the
templates with the sha256 of the file, which the manifest records so a dataset says how its text
was made."""
from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass

import yaml

PROMPT_DIR = importlib.resources.files("armdata.prompts")   # installed as package data


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    templates: dict[str, str]
    sha256: str

    def format(self, key: str, **fields: object) -> str:
        return self.templates[key].format(**fields)


def load_prompt(name: str, required: tuple[str, ...]) -> Prompt:
    """prompts/<name>.yaml with at least the `required` template keys, or a ValueError."""
    path = PROMPT_DIR / f"{name}.yaml"
    data = path.read_bytes()
    raw = yaml.safe_load(data)
    if not isinstance(raw, dict) or not isinstance(raw.get("version"), int):
        raise ValueError(f"{path}: needs an integer `version` and template strings")
    missing = [k for k in required if not isinstance(raw.get(k), str)]
    if missing:
        raise ValueError(f"{path}: missing template(s) {missing}")
    templates = {k: v for k, v in raw.items() if isinstance(v, str)}
    return Prompt(name, raw["version"], templates, hashlib.sha256(data).hexdigest())
