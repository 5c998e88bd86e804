"""Reading a diffusers model directory: check it is complete and a supported video pipeline, cheaply.

`inspect_model_dir` reads only JSON (model_index.json and the transformer,
VAE and scheduler configs) and lists the files each component needs, so a
half-downloaded or wrong directory is refused with the model's name and what
is missing before torch loads a single weight. `load_pipeline` then builds the
diffusers pipeline for a task; components are shared between the pipeline
classes of one family (`from_pipe`), so switching from text-to-video to
image-to-video on the same model costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.engine.diffusers.families import Configs, Family, family_for, unsupported_message
from kinema.errors import KinemaInputError

MODEL_INDEX = "model_index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json", ".gguf")
# What a component folder must hold, by the kind of class model_index names.
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "spiece.model", "vocab.json", "added_tokens.json")


@dataclass(frozen=True)
class ModelInfo:
    """What a model directory is, read from its JSON alone."""

    path: Path
    name: str  # how to name the model in messages (the directory or hub id)
    family: Family
    pipeline_class: str
    configs: Configs
    components: dict[str, tuple[str, str]]  # name -> (library, class)


def is_diffusers_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_INDEX).is_file()


def _read_json(path: Path, model: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KinemaInputError(f"model {model}: {path.parent.name}/{path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise KinemaInputError(f"model {model}: cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise KinemaInputError(f"model {model}: {path.name} is not a JSON object")
    return data


def _component_problem(folder: Path, library: str, cls: str) -> str | None:
    """Why a component folder cannot load, or None if it looks complete."""
    if not folder.is_dir():
        return f"{folder.name}/ (a {cls}) is missing"
    files = [p.name for p in folder.iterdir()]
    if "Scheduler" in cls:
        return None if "scheduler_config.json" in files else f"{folder.name}/scheduler_config.json is missing"
    if "Tokenizer" in cls:
        return None if any(f in files for f in _TOKENIZER_FILES) else f"{folder.name}/ has no tokenizer files"
    if "Processor" in cls or "FeatureExtractor" in cls:
        return None if "preprocessor_config.json" in files else f"{folder.name}/preprocessor_config.json is missing"
    if "config.json" not in files:
        return f"{folder.name}/config.json is missing"
    if not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        return f"{folder.name}/ has no weights (*.safetensors)"
    return None


def inspect_model_dir(path: str | Path, name: str | None = None) -> ModelInfo:
    """Recognise the family and check every file a load needs; raises KinemaInputError naming what is wrong."""
    path = Path(path)
    model = name or str(path)
    if not path.is_dir():
        raise KinemaInputError(f"model {model}: directory does not exist")
    if not (path / MODEL_INDEX).is_file():
        raise KinemaInputError(f"model {model}: not a diffusers model directory (no {MODEL_INDEX})")
    index = _read_json(path / MODEL_INDEX, model)
    cls = index.get("_class_name")
    if not isinstance(cls, str):
        raise KinemaInputError(f"model {model}: {MODEL_INDEX} does not name its pipeline (_class_name)")
    family = family_for(cls)
    if family is None:
        raise KinemaInputError(f"model {model}: {unsupported_message(cls)}")

    components = {k: (v[0], v[1]) for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] and v[1]}
    for required in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        if required not in components:
            raise KinemaInputError(f"model {model}: {MODEL_INDEX} has no {required} (a {family.title} pipeline needs one)")
    problems = [p for comp, (lib, c) in components.items() if (p := _component_problem(path / comp, lib, c))]
    if problems:
        raise KinemaInputError(f"model {model}: incomplete download: {'; '.join(problems)}")

    configs: Configs = {"model_index": index}
    configs["transformer"] = _read_json(path / "transformer" / "config.json", model)
    configs["vae"] = _read_json(path / "vae" / "config.json", model)
    configs["scheduler"] = _read_json(path / "scheduler" / "scheduler_config.json", model)
    return ModelInfo(path=path, name=model, family=family, pipeline_class=cls, configs=configs, components=components)


def load_pipeline(info: ModelInfo, torch_dtype: Any) -> Any:
    """The pipeline `info` was saved as, every component in `torch_dtype`, nothing from the network."""
    import diffusers

    pipeline_cls = getattr(diffusers, info.pipeline_class)
    return pipeline_cls.from_pretrained(str(info.path), dtype=torch_dtype, local_files_only=True)


def pipeline_for(pipe: Any, class_name: str) -> Any:
    """The same components under another pipeline class of the family (no copy, no reload)."""
    import diffusers

    if type(pipe).__name__ == class_name:
        return pipe
    return getattr(diffusers, class_name).from_pipe(pipe)
