"""The memory/speed flags (--device, --dtype, --offload, --vae-tiling, --vae-slicing, --attention, --compile):
one DiffusersOptions from every command to `Pipeline.from_model`, applied to the loaded diffusers pipeline,
refused with the reason for kinema's own model, and refused as one clear line where the machine cannot run them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from conftest import build_tiny_model  # noqa: E402
from kinema import cli  # noqa: E402
from kinema.engine.diffusers.backend import DiffusersBackend  # noqa: E402
from kinema.engine.diffusers.memory import DiffusersOptions  # noqa: E402
from kinema.engine.diffusers.tiny import save_tiny_pipeline  # noqa: E402
from kinema.engine.models import resolve_backend  # noqa: E402
from kinema.engine.native import NativeBackend  # noqa: E402
from kinema.engine.pipeline import Pipeline  # noqa: E402
from kinema.errors import KinemaInputError  # noqa: E402
from kinema.video.io import read_video  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_FLAGS = ["--device", "cpu", "--dtype", "bfloat16", "--offload", "model", "--vae-tiling", "--vae-slicing", "--attention", "math", "--compile"]
ALL_OPTIONS = DiffusersOptions(dtype="bf16", offload="model", vae_tiling=True, vae_slicing=True, attention_backend="_native_math", compile=True)


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pipeline("wan-t2v", tmp_path_factory.mktemp("wan") / "wan")


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("native") / "m")


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["kinema", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0)


# -- one options object ----------------------------------------------------------------------------


def test_spellings_become_one_options_object() -> None:
    assert DiffusersOptions(dtype="bfloat16").dtype == "bf16" and DiffusersOptions(dtype="float32").dtype == "fp32"
    assert DiffusersOptions(dtype="float16") == DiffusersOptions(dtype="fp16")
    assert DiffusersOptions(attention_backend="sdpa").attention_backend == "native"
    assert DiffusersOptions(attention_backend="default").attention_backend is None
    assert DiffusersOptions().changed() == {}
    assert ALL_OPTIONS.describe() == "--dtype bf16 --offload model --vae-tiling --vae-slicing --attention _native_math --compile"


class _Stop(KinemaInputError):
    pass


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Pipeline.from_model records what a command handed it, then stops the command (exit 2)."""
    calls: list[dict[str, Any]] = []

    def from_model(cls: type, name_or_path: Any = None, device: str = "cpu", options: Any = None) -> Pipeline:
        calls.append({"model": name_or_path, "device": device, "options": options})
        raise _Stop("stopped after from_model")

    monkeypatch.setattr(Pipeline, "from_model", classmethod(from_model))
    return calls


def test_generate_story_and_evaluate_hand_the_flags_to_from_model(captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"shots": [{"prompt": "a red ball", "duration": 1}]}))
    commands = [
        ["generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--model", "some/model"],
        ["story", str(board), "--plan", "--model", "some/model"],
        ["evaluate", "--json", str(tmp_path / "r.json"), "--limit", "1", "--model", "some/model", "--no-progress"],
    ]
    for args in commands:
        assert run(monkeypatch, *args, *ALL_FLAGS) == 2, args
    assert [c["options"] for c in captured] == [ALL_OPTIONS] * 3
    assert {c["device"] for c in captured} == {"cpu"} and {c["model"] for c in captured} == {"some/model"}


def test_serve_hands_the_flags_to_every_worker_backend(captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pickle

    import uvicorn

    import kinema.service.app as service_app

    factories: list[Any] = []
    monkeypatch.setattr(service_app, "create_app", lambda settings, factory, **kw: factories.append(factory) or object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    assert run(monkeypatch, "serve", "--data-dir", str(tmp_path / "data"), "--model", "some/model", *ALL_FLAGS) == 0
    (factory,) = factories
    factory = pickle.loads(pickle.dumps(factory))  # Ray ships the factory to its actors
    with pytest.raises(_Stop):
        factory()
    assert captured == [{"model": "some/model", "device": "cpu", "options": ALL_OPTIONS}]


def test_defaults_are_the_default_options(captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert run(monkeypatch, "generate", "a ball", "-o", str(tmp_path / "x.mp4")) == 2
    assert captured[0]["options"] == DiffusersOptions() and captured[0]["device"] == "auto"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--dtype", "int8"], "--dtype must be one of auto, float32, bfloat16, float16, got 'int8'"),
        (["--offload", "disk"], "--offload must be one of none, model, sequential"),
    ],
)
def test_bad_flag_values_are_refused_before_any_model(captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path, flags: list[str], needle: str) -> None:  # fmt: skip
    assert run(monkeypatch, "generate", "a ball", "-o", str(tmp_path / "x.mp4"), *flags) == 2
    assert needle in capsys.readouterr().err and captured == []


# -- applied to the loaded pipeline -----------------------------------------------------------------


def _attention_backends(module: torch.nn.Module) -> set[str]:
    return {str(getattr(p, "_attention_backend").value) for m in module.modules() if (p := getattr(m, "processor", None)) is not None and getattr(p, "_attention_backend", None) is not None}


def test_generate_flags_reach_the_loaded_pipeline(wan_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real CLI: bf16 weights, VAE tiling and slicing on, the math attention kernel set, and a video out."""
    made: list[Pipeline] = []
    real = Pipeline.from_model.__func__  # type: ignore[attr-defined]

    def keep(cls: type, *args: Any, **kwargs: Any) -> Pipeline:
        made.append(real(cls, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(Pipeline, "from_model", classmethod(keep))
    out = tmp_path / "wan.mp4"
    args = ["generate", "a ball", "-o", str(out), "--model", str(wan_dir), "--width", "32", "--height", "32", "--seconds", "0.5", "--steps", "2",
            "--seed", "1", "--no-progress", "--device", "cpu", "--dtype", "bfloat16", "--vae-tiling", "--vae-slicing", "--attention", "math"]  # fmt: skip
    assert run(monkeypatch, *args) == 0
    loaded = made[0].backend._pipe
    assert loaded.transformer.dtype == torch.bfloat16 and loaded.vae.dtype == torch.bfloat16 and loaded.text_encoder.dtype == torch.bfloat16
    assert loaded.vae.use_tiling and loaded.vae.use_slicing
    assert _attention_backends(loaded.transformer) == {"_native_math"}
    frames, _ = read_video(out)
    assert frames.shape == (8, 32, 32, 3)


def test_defaults_leave_the_pipeline_alone(wan_dir: Path) -> None:
    backend = DiffusersBackend(wan_dir)
    backend.load()
    pipe = backend._pipe
    assert pipe.transformer.dtype == torch.float32 and not pipe.vae.use_tiling and not pipe.vae.use_slicing
    assert _attention_backends(pipe.transformer) <= {"native"}  # diffusers' default dispatcher entry, if any
    assert getattr(pipe.transformer, "_compiled_call_impl", None) is None


def test_compile_compiles_every_transformer_in_place(tmp_path: Path) -> None:
    """Wan 2.2 A14B has two experts; both are compiled, and the classes stay (so from_pipe still shares them)."""
    directory = save_tiny_pipeline("wan22-i2v", tmp_path / "a14b")
    backend = DiffusersBackend(directory, options=DiffusersOptions(compile=True, attention_backend="sdpa"))
    backend.load()
    for transformer in (backend._pipe.transformer, backend._pipe.transformer_2):
        assert transformer._compiled_call_impl is not None
        assert type(transformer).__name__ == "WanTransformer3DModel"
        assert _attention_backends(transformer) == {"native"}


def test_options_carry_over_to_other_task_pipelines(tmp_path: Path) -> None:
    """Switching pipeline class (text-to-video -> image-to-video on an LTX checkpoint) keeps tiling and attention."""
    directory = save_tiny_pipeline("ltx", tmp_path / "ltx")
    backend = DiffusersBackend(directory, options=DiffusersOptions(vae_tiling=True, attention_backend="_native_math"))
    i2v = backend.pipeline("LTXImageToVideoPipeline")
    assert type(i2v).__name__ == "LTXImageToVideoPipeline" and i2v.vae.use_tiling
    assert _attention_backends(i2v.transformer) == {"_native_math"}
    assert backend.pipeline("LTXImageToVideoPipeline") is i2v  # made once per class


# -- kinema's own model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--offload", "model"], ["--offload model: it is small enough to stay on one device"]),
        (["--vae-tiling"], ["--vae-tiling: its VAE already decodes in latent-frame chunks"]),
        (["--vae-slicing", "--compile"], ["--vae-slicing: it makes one video per call", "--compile: torch.compile is wired up for diffusers"]),
        (["--attention", "flash"], ["--attention flash: its DiT calls PyTorch SDPA directly"]),
        (["--dtype", "float16"], ["float16 (fp16) is not supported on the CPU"]),
    ],
)
def test_native_model_refuses_what_it_cannot_use(native_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 flags: list[str], needles: list[str]) -> None:  # fmt: skip
    code = run(monkeypatch, "generate", "a circle", "-o", str(tmp_path / "x.mp4"), "--model", str(native_dir), "--device", "cpu", *flags)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"model {native_dir}" in err and all(n in err for n in needles), err
    assert not (tmp_path / "x.mp4").exists()


def test_native_model_takes_dtype_and_the_harmless_flags(native_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backend(str(native_dir), options=DiffusersOptions(dtype="bfloat16")).dtype == torch.bfloat16
    for options in (DiffusersOptions(), DiffusersOptions(dtype="auto"), DiffusersOptions(dtype="float32", attention_backend="sdpa")):
        backend = resolve_backend(str(native_dir), options=options)
        assert isinstance(backend, NativeBackend) and backend.dtype == torch.float32
    out = tmp_path / "native.mp4"
    args = ["generate", "a circle", "-o", str(out), "--model", str(native_dir), "--seed", "1", "--no-progress",
            "--dtype", "bfloat16", "--attention", "sdpa", "--no-vae-tiling"]  # fmt: skip
    assert run(monkeypatch, *args) == 0
    assert read_video(out)[0].shape == (8, 32, 32, 3)


# -- what this machine cannot run ------------------------------------------------------------------------


def test_offload_on_a_cpu_only_machine_is_one_line(wan_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = run(monkeypatch, "generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--model", str(wan_dir), "--offload", "model")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "this machine has no CUDA GPU (torch.cuda.is_available() is False), so drop --offload" in err
    assert run(monkeypatch, "generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--model", str(wan_dir), "--device", "cuda") == 2
    assert "device cuda: this machine has no CUDA GPU" in capsys.readouterr().err


def test_offload_with_a_gpu_present_but_the_cpu_chosen(wan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(KinemaInputError, match="the device is the CPU: pass --device cuda"):
        DiffusersBackend(wan_dir, device="cpu", options=DiffusersOptions(offload="sequential"))


def test_offload_without_accelerate(wan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate -> ModuleNotFoundError
    with pytest.raises(KinemaInputError, match="offload 'model' needs accelerate: pip install 'kinema\\[diffusers\\]'"):
        DiffusersBackend(wan_dir, device="cuda", options=DiffusersOptions(offload="model"))


def test_compile_without_a_compiler_on_the_cpu(wan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KinemaInputError, match="--compile on the CPU needs a C\\+\\+ compiler"):
        DiffusersBackend(wan_dir, options=DiffusersOptions(compile=True))


@pytest.mark.parametrize(
    ("device", "needle"),
    [("tpu", "unknown device 'tpu'"), ("cuda:3", "no CUDA GPU"), ("warp", "unknown device 'warp'")],
)
def test_unknown_or_missing_devices(wan_dir: Path, monkeypatch: pytest.MonkeyPatch, device: str, needle: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(KinemaInputError, match=needle):
        resolve_backend(str(wan_dir), device=device)


def test_auto_device_is_the_cpu_here(wan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend(str(wan_dir), device="auto").device == "cpu"


# -- the studio's shot cache tells models and their options apart ---------------------------------------------


def test_model_id_follows_the_model_and_the_options_that_change_pixels(wan_dir: Path, tmp_path: Path) -> None:
    other = save_tiny_pipeline("wan-i2v", tmp_path / "other")
    base = DiffusersBackend(wan_dir).model_id
    assert base == DiffusersBackend(wan_dir).model_id
    assert base != DiffusersBackend(other).model_id
    assert base != DiffusersBackend(wan_dir, options=DiffusersOptions(dtype="bf16")).model_id
    assert base != DiffusersBackend(wan_dir, options=DiffusersOptions(vae_tiling=True)).model_id
    assert base == DiffusersBackend(wan_dir, options=DiffusersOptions(vae_slicing=True)).model_id  # slicing changes memory, not pixels
