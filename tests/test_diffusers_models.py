"""`--model` resolution, bad model directories, memory options, the cost model and `kinema models`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from conftest import build_tiny_model  # noqa: E402
from kinema.cli import app  # noqa: E402
from kinema.engine.diffusers import cost  # noqa: E402
from kinema.engine.diffusers.backend import DiffusersBackend  # noqa: E402
from kinema.engine.diffusers.families import FAMILIES  # noqa: E402
from kinema.engine.diffusers.memory import DiffusersOptions  # noqa: E402
from kinema.engine.diffusers.tiny import save_tiny_pipeline  # noqa: E402
from kinema.engine.models import resolve_backend  # noqa: E402
from kinema.engine.native import NativeBackend  # noqa: E402
from kinema.errors import KinemaInputError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pipeline("wan-t2v", tmp_path_factory.mktemp("wan") / "wan")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- resolution ------------------------------------------------------------------------------------


def test_resolver_picks_the_backend(wan_dir: Path, tmp_path: Path) -> None:
    assert isinstance(resolve_backend(None), NativeBackend)
    assert isinstance(resolve_backend("builtin"), NativeBackend)
    assert isinstance(resolve_backend(str(build_tiny_model(tmp_path / "native"))), NativeBackend)
    backend = resolve_backend(str(wan_dir))
    assert isinstance(backend, DiffusersBackend) and backend.family.name == "wan"


def test_hub_id_is_not_fetched_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KinemaInputError, match="Wan-AI/Wan2.1-T2V-1.3B-Diffusers: not a local directory, and HF_HUB_OFFLINE is set"):
        resolve_backend("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")


def test_unreachable_hub_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def unreachable(*args: object, **kwargs: object) -> str:
        raise ConnectionError("Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(KinemaInputError, match="org/model: cannot fetch model_index.json from the hub .*unreachable"):
        resolve_backend("org/model")


def test_hub_repository_of_another_kind_is_refused_before_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    index = tmp_path / "model_index.json"
    index.write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(index))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("weights must not download"))
    with pytest.raises(KinemaInputError, match="StableDiffusionPipeline is not a supported video pipeline"):
        resolve_backend("org/image-model")


# -- bad model directories -------------------------------------------------------------------------


def test_directory_missing_weights_names_the_file(wan_dir: Path, tmp_path: Path) -> None:
    broken = _copy(wan_dir, tmp_path / "broken")
    for f in (broken / "transformer").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(KinemaInputError, match=r"broken: incomplete download: transformer/ has no weights"):
        resolve_backend(str(broken))


def test_directory_missing_a_component_folder(wan_dir: Path, tmp_path: Path) -> None:
    broken = _copy(wan_dir, tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    with pytest.raises(KinemaInputError, match=r"vae/ \(a AutoencoderKLWan\) is missing"):
        resolve_backend(str(broken))


def test_directory_without_any_index_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(KinemaInputError, match="not a model directory"):
        resolve_backend(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("class_name", "needle"),
    [
        ("StableDiffusionPipeline", "not a supported video pipeline \\(unknown family\\)"),
        ("MyVideoPipeline", "unknown family"),
        ("AllegroPipeline", "not supported yet: Allegro \\(AllegroPipeline\\); kinema runs Wan 2.1 / 2.2"),
        ("LTX2Pipeline", "not supported yet: LTX-2 .*SkyReels-V2 .*Mochi 1 \\(MochiPipeline\\)"),
    ],
)
def test_not_a_supported_video_pipeline(wan_dir: Path, tmp_path: Path, class_name: str, needle: str) -> None:
    other = _copy(wan_dir, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = class_name
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(KinemaInputError, match=needle):
        resolve_backend(str(other))


# -- memory options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (DiffusersOptions(dtype="fp16"), "float16 \\(fp16\\) is not supported on the CPU"),
        (DiffusersOptions(dtype="float16"), "float16 \\(fp16\\) is not supported on the CPU"),
        (DiffusersOptions(dtype="int4"), "unknown dtype 'int4'"),
        (DiffusersOptions(offload="model"), "offload 'model' keeps weights in CPU memory"),
        (DiffusersOptions(offload="sequential"), "offload 'sequential' keeps weights in CPU memory"),
        (DiffusersOptions(attention_backend="flash"), "attention backend 'flash' cannot run here: .*flash-attn"),
        (DiffusersOptions(attention_backend="_native_cudnn"), "attention backend '_native_cudnn' needs a GPU"),
        (DiffusersOptions(offload="disk"), "unknown offload"),
        (DiffusersOptions(attention_backend="warp-speed"), "unknown attention backend"),
        (DiffusersOptions(window_frames=10), "window_frames 10 must be 1 \\+ 4k"),
    ],
)
def test_options_the_device_cannot_run_are_refused(wan_dir: Path, options: DiffusersOptions, needle: str) -> None:
    with pytest.raises(KinemaInputError, match=needle) as err:
        DiffusersBackend(wan_dir, options=options)
    assert str(wan_dir) in str(err.value)


def test_bf16_vae_tiling_and_attention_backend_run_on_cpu(wan_dir: Path) -> None:
    backend = DiffusersBackend(wan_dir, options=DiffusersOptions(dtype="bf16", vae_tiling=True, vae_slicing=True, attention_backend="native"))
    from kinema.engine.pipeline import Pipeline

    video = Pipeline(backend).generate("a ball", seed=0, steps=2, seconds=0.5, width=32, height=32)
    assert video.frames.shape == (8, 32, 32, 3)
    assert backend._pipe.transformer.dtype == torch.bfloat16
    assert backend._pipe.vae.use_tiling


# -- cost model ------------------------------------------------------------------------------------


def _counted(model: torch.nn.Module, **inputs: object) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:  # MATH: attention as counted matmuls
        model(**inputs, return_dict=False)
    return counter.get_total_flops()


def test_flops_formulas_match_a_measured_count() -> None:
    """Each family's analytic FLOPs per pass within 2% of torch's FLOP counter on a 2-layer transformer."""
    import diffusers

    torch.manual_seed(0)
    text = 32
    cases = []
    wan = diffusers.WanTransformer3DModel(num_attention_heads=2, attention_head_dim=64, in_channels=16, out_channels=16, text_dim=64, ffn_dim=512, num_layers=2)
    cases.append((cost.wan_flops, wan, 3 * 8 * 8, dict(hidden_states=torch.randn(1, 16, 3, 16, 16), timestep=torch.tensor([500]), encoder_hidden_states=torch.randn(1, text, 64))))
    ltx = diffusers.LTXVideoTransformer3DModel(in_channels=32, out_channels=32, num_attention_heads=2, attention_head_dim=64, cross_attention_dim=128, num_layers=2, caption_channels=64)
    cases.append((cost.ltx_flops, ltx, 192, dict(hidden_states=torch.randn(1, 192, 32), encoder_hidden_states=torch.randn(1, text, 64), timestep=torch.tensor([500]),
                                                 encoder_attention_mask=torch.ones(1, text), num_frames=3, height=8, width=8)))  # fmt: skip
    cog = diffusers.CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=64, text_embed_dim=64,
                                                num_layers=2, sample_width=16, sample_height=16, max_text_seq_length=text)  # fmt: skip
    cases.append((cost.cogvideox_flops, cog, 192, dict(hidden_states=torch.randn(1, 3, 16, 16, 16), encoder_hidden_states=torch.randn(1, text, 64), timestep=torch.tensor([500]))))
    hy = diffusers.HunyuanVideoTransformer3DModel(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=64, num_layers=2, num_single_layers=2,
                                                  num_refiner_layers=1, text_embed_dim=64, pooled_projection_dim=32, rope_axes_dim=(16, 24, 24))  # fmt: skip
    cases.append((cost.hunyuan_flops, hy, 192, dict(hidden_states=torch.randn(1, 16, 3, 16, 16), timestep=torch.tensor([500]), encoder_hidden_states=torch.randn(1, text, 64),
                                                    encoder_attention_mask=torch.ones(1, text), pooled_projections=torch.randn(1, 32), guidance=torch.tensor([6000.0]))))  # fmt: skip
    sky = diffusers.SkyReelsV2Transformer3DModel(num_attention_heads=2, attention_head_dim=64, in_channels=16, out_channels=16, text_dim=64, ffn_dim=512, num_layers=2)
    cases.append((cost.wan_flops, sky, 3 * 8 * 8, dict(hidden_states=torch.randn(1, 16, 3, 16, 16), timestep=torch.tensor([500]), encoder_hidden_states=torch.randn(1, text, 64))))
    mochi = diffusers.MochiTransformer3DModel(num_attention_heads=2, attention_head_dim=64, num_layers=2, pooled_projection_dim=96, in_channels=12,
                                              text_embed_dim=64, time_embed_dim=32, max_sequence_length=text)  # fmt: skip
    cases.append((cost.mochi_flops, mochi, 3 * 8 * 8, dict(hidden_states=torch.randn(1, 12, 3, 16, 16), encoder_hidden_states=torch.randn(1, text, 64),
                                                           timestep=torch.tensor([500]), encoder_attention_mask=torch.ones(1, text))))  # fmt: skip
    for formula, model, tokens, inputs in cases:
        predicted = formula(dict(model.config), tokens, text)
        measured = _counted(model, **inputs)
        assert predicted == pytest.approx(measured, rel=0.02), type(model).__name__


def test_cost_doubles_with_guidance_except_for_distilled_families(wan_dir: Path) -> None:
    backend = DiffusersBackend(wan_dir)
    cfg = backend.info.configs
    guided = cost.estimate_cost(FAMILIES["wan"], cfg, 9, 32, 32, steps=4, guidance=5.0)
    plain = cost.estimate_cost(FAMILIES["wan"], cfg, 9, 32, 32, steps=4, guidance=1.0)
    assert guided.tokens == 3 * 2 * 2  # 3 latent frames x (32 / 8 / 2)^2
    assert guided.total_flops == pytest.approx(2 * plain.total_flops)
    hy = dict(cfg, model_index={"_class_name": "HunyuanVideoPipeline"})
    assert cost.estimate_cost(FAMILIES["hunyuan"], {**hy, "transformer": {"num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1, "num_single_layers": 1}}, 9, 32, 32, 4, 6.0).passes_per_step == 1


# -- kinema models / generate --model --------------------------------------------------------------


def test_models_command_lists_families_and_describes_a_model(wan_dir: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    listing = runner.invoke(app, ["models"])
    assert listing.exit_code == 0
    for family in FAMILIES.values():
        assert family.title in listing.output
    one = runner.invoke(app, ["models", str(wan_dir)])
    assert one.exit_code == 0, one.output
    assert "tasks: interpolation, text-to-video" in one.output and "any multiple of 16" in one.output and "GFLOP per token" in one.output


def test_generate_runs_a_diffusers_directory_and_prints_the_snap(wan_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kinema.cli import main
    from kinema.video.io import read_video

    out = tmp_path / "wan.mp4"
    monkeypatch.setattr("sys.argv", ["kinema", "generate", "a ball", "-o", str(out), "--model", str(wan_dir), "--width", "30", "--height", "30",
                                     "--seconds", "0.5", "--steps", "2", "--seed", "1", "--no-progress"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "size snapped to 32x32" in captured.err and "generating 9" in captured.err
    frames, fps = read_video(out)
    assert frames.shape == (8, 32, 32, 3) and fps == 16


def test_generate_refuses_a_missing_mode_with_exit_code_2(wan_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from kinema.cli import main

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    monkeypatch.setattr("sys.argv", ["kinema", "generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--model", str(wan_dir), "--image", str(tmp_path / "a.png")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "does not support image to video" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
