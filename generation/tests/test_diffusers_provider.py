"""The diffusers providers on CPU with tiny, randomly initialised pipelines built here and saved to tmp_path
(nothing is downloaded): a Stable Diffusion text-to-image pipeline and a Stable Video Diffusion image-to-video
pipeline, each a few hundred kilobytes to a few megabytes. Their pictures are noise; the tests check the
plumbing: loading from a local path, sizes, determinism, H.264 output, out-of-memory fallbacks.
The real GPU path runs only where CUDA is available, and is reported as skipped elsewhere.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.diffusers, pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

try:
    import diffusers
    import imageio_ffmpeg
    import torch
    import transformers
except ImportError as missing:
    # CI installs requirements/gpu.txt and sets REQUIRE_GPU_DEPS=1: there a missing package fails the run.
    if os.environ.get("REQUIRE_GPU_DEPS") == "1":
        raise
    pytest.skip(f"needs the GPU worker packages ({missing.name}): make install-gpu", allow_module_level=True)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from generation.providers.base import ProviderError, StageContext  # noqa: E402
from generation.providers.diffusers import media as dp  # noqa: E402
from generation.providers.diffusers.media import DiffusersImage, DiffusersVideo  # noqa: E402

STYLE = {"name": "nature", "visual_description": "golden hour, soft film grain"}
SHOT = {"number": 1, "description": "a red fox in snow", "shot_type": "wide", "camera_movement": "pan_left",
        "lighting": "low sun", "composition": "rule of thirds", "duration_s": 1.0}
REPO_ROOT = Path(__file__).resolve().parents[2]


# Tiny pipelines, built once per module


def _tiny_tokenizer(folder: Path):
    """A CLIP tokenizer over single letters: enough to turn any prompt into ids, no download."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz0123456789.,":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                           model_max_length=77)
    return tokenizer, len(vocab)


@pytest.fixture(scope="module")
def image_model_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-sd")
    tokenizer, vocab_size = _tiny_tokenizer(folder)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=2)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, vocab_size=vocab_size, hidden_size=16,
        intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=77))
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.save_pretrained(folder / "model")
    return str(folder / "model")


@pytest.fixture(scope="module")
def video_model_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-svd")
    torch.manual_seed(0)
    unet = diffusers.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16, num_attention_heads=2, projection_class_embeddings_input_dim=24,
        addition_time_embed_dim=8)
    vae = diffusers.AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                                 down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4)
    # The pipeline resizes the conditioning image to 224x224 for its CLIP encoder; 32-pixel patches keep it small.
    image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=16, projection_dim=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=224, patch_size=32))
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    pipe = diffusers.StableVideoDiffusionPipeline(unet=unet, image_encoder=image_encoder, scheduler=scheduler,
                                                  vae=vae, feature_extractor=transformers.CLIPImageProcessor(
                                                      crop_size=32, size=32))
    pipe.save_pretrained(folder / "model")
    return str(folder / "model")


@pytest.fixture(autouse=True)
def _fresh_pipeline_cache():
    dp.clear_pipeline_cache()
    yield
    dp.clear_pipeline_cache()


@pytest.fixture
def make_ctx(tmp_path):
    def make(resolution: str = "480p", aspect_ratio: str = "16:9", prompts: dict | None = None,
             **settings) -> StageContext:
        return StageContext(organization_id=1, job_id="job-1", options={"resolution": resolution,
                                                                         "aspect_ratio": aspect_ratio},
                            prompts=prompts or {}, work_dir=tmp_path,
                            settings={"device": "cpu", "steps": 2, "max_side": 64, **settings})
    return make


def probe(path: Path) -> dict:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(frame, dtype=np.uint8) for frame in reader]
    return {**meta, "frames": len(frames)}


# Text to image


def test_frame_is_a_png_of_ctx_size_from_a_local_tiny_pipeline(image_model_path, make_ctx, tmp_path):
    out = tmp_path / "frames" / "1.png"

    result = DiffusersImage().frame(shot=SHOT, style=STYLE, out=out,
                                    ctx=make_ctx(image_model_path=image_model_path))

    assert result.value == out
    with Image.open(out) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (854, 480), "RGB")
    assert result.usage["device"] == "cpu"
    assert result.usage["steps"] == 2
    assert result.usage["size"] == [854, 480]
    assert result.usage["working_size"] == [64, 32]  # max_side 64 at 16:9, in multiples of 8, then upscaled
    assert result.usage["attempts"] == 1
    assert result.usage["seconds"] > 0


def test_portrait_frame_and_the_models_native_area_by_default(image_model_path, make_ctx, tmp_path):
    ctx = make_ctx(aspect_ratio="9:16", max_side=None, image_model_path=image_model_path)

    result = DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "p.png", ctx=ctx)

    with Image.open(tmp_path / "p.png") as image:
        assert image.size == (480, 854)
    # native: sample_size 32 x VAE factor 2 = 64, so about 64 x 64 pixels at 9:16
    assert result.usage["working_size"] == [48, 88]


def test_same_shot_same_frame_and_the_seed_matters(image_model_path, make_ctx, tmp_path):
    ctx = make_ctx(image_model_path=image_model_path, max_side=32)
    provider = DiffusersImage()

    provider.frame(shot=SHOT, style=STYLE, out=tmp_path / "a.png", ctx=ctx)
    provider.frame(shot=SHOT, style=STYLE, out=tmp_path / "b.png", ctx=ctx)
    provider.frame(shot={**SHOT, "seed": 1234}, style=STYLE, out=tmp_path / "c.png", ctx=ctx)

    a, b, c = (np.asarray(Image.open(tmp_path / name)) for name in ("a.png", "b.png", "c.png"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pipelines_are_loaded_once_per_path_and_device(image_model_path, make_ctx, tmp_path, monkeypatch):
    loads = []
    original = dp._from_pretrained
    monkeypatch.setattr(dp, "_from_pretrained", lambda *args: loads.append(args) or original(*args))
    ctx = make_ctx(image_model_path=image_model_path, max_side=32)

    DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "1.png", ctx=ctx)
    DiffusersImage().frame(shot={**SHOT, "number": 2}, style=STYLE, out=tmp_path / "2.png", ctx=ctx)

    assert loads == [("image", image_model_path, "float32")]


def test_cancelled_job_stops_between_denoising_steps(image_model_path, make_ctx, tmp_path):
    ctx = make_ctx(image_model_path=image_model_path, max_side=32)
    answers = iter([False, True])
    ctx.is_cancelled = lambda: next(answers, True)

    with pytest.raises(ProviderError, match="cancelled"):
        DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "x.png", ctx=ctx)
    assert not (tmp_path / "x.png").exists()


def test_missing_or_absent_model_is_a_provider_error(make_ctx, tmp_path):
    with pytest.raises(ProviderError, match="no image_model_path"):
        DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "x.png", ctx=make_ctx())
    with pytest.raises(ProviderError, match="no model at"):
        DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "x.png",
                               ctx=make_ctx(image_model_path=str(tmp_path / "nowhere")))


def test_prompt_puts_the_shot_first_then_style_and_template():
    prompt = dp.build_prompt(SHOT, STYLE, "brand colours teal", motion=True)

    assert prompt == ("a red fox in snow. wide shot, camera pan left, low sun, rule of thirds. "
                      "golden hour, soft film grain. brand colours teal")
    assert dp.build_prompt({"description": "x"}, {}, None) == "x"


def test_seed_follows_the_shot_and_its_regeneration():
    assert dp.shot_seed(SHOT) == dp.shot_seed(dict(SHOT))
    assert dp.shot_seed({**SHOT, "seed": 1}) != dp.shot_seed({**SHOT, "seed": 0})  # a regeneration
    assert dp.shot_seed({**SHOT, "seed": 0, "number": 2}) != dp.shot_seed({**SHOT, "seed": 0})  # another shot
    assert 0 <= dp.shot_seed(SHOT) < 2**32


def test_module_imports_without_torch_and_fails_cleanly():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['diffusers'] = None\n"
            "from pathlib import Path\n"
            "from generation.providers.base import ProviderError, StageContext\n"
            "from generation.providers.diffusers.media import DiffusersImage\n"
            "ctx = StageContext(1, 'j', {}, {}, Path('.'), settings={'image_model_path': '/m'})\n"
            "try:\n    DiffusersImage().frame(shot={}, style={}, out=Path('x.png'), ctx=ctx)\n"
            "except ProviderError as exc:\n    print('ProviderError:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "ProviderError: diffusers: torch is not installed" in done.stdout


# Image to video


def test_clip_is_an_h264_mp4_of_ctx_size_fps_and_duration(video_model_path, make_ctx, tmp_path):
    first = tmp_path / "first.png"
    Image.new("RGB", (854, 480), (200, 60, 40)).save(first)
    out = tmp_path / "clips" / "1.mp4"
    ctx = make_ctx(video_model_path=video_model_path, num_frames=3, decode_chunk_size=3)

    result = DiffusersVideo().clip(shot=SHOT, style=STYLE, frame=first, fps=8, out=out, ctx=ctx)

    assert result.value == out
    meta = probe(out)
    assert meta["codec"] == "h264"
    assert tuple(meta["size"]) == (854, 480)
    assert meta["fps"] == 8
    assert meta["frames"] == 8  # 1.0 s at 8 fps, from the model's 3 frames
    assert result.usage["model_frames"] == 3
    assert result.usage["frames"] == 8
    assert result.usage["working_size"] == [64, 32]
    assert not out.with_name(out.name + ".part.mp4").exists()


class FrameSweep(diffusers.DiffusionPipeline):
    """A generic pipeline with its own __call__: the provider passes only the arguments it names.
    It answers frames as a numpy array (batch, frames, height, width, channels) in [0, 1]."""

    def __init__(self, scheduler):
        super().__init__()
        self.register_modules(scheduler=scheduler)
        self.calls = []

    def __call__(self, image, num_frames: int = 4, height: int = 64, width: int = 64, generator=None):
        self.calls.append({"image_size": image.size, "num_frames": num_frames, "height": height, "width": width})
        ramp = np.linspace(0, 1, num_frames, dtype=np.float32)[:, None, None, None]
        frames = np.broadcast_to(ramp, (num_frames, height, width, 3))[None]
        return diffusers.utils.BaseOutput(frames=frames)


def test_any_diffusion_pipeline_gets_the_arguments_it_names(make_ctx, tmp_path, monkeypatch):
    sweep = FrameSweep(scheduler=diffusers.DDIMScheduler())
    monkeypatch.setattr(dp, "_from_pretrained", lambda kind, path, dtype: sweep)
    first = tmp_path / "first.png"
    Image.new("RGB", (854, 480)).save(first)
    ctx = make_ctx(video_model_path="/models/sweep", num_frames=5, motion_bucket_id=90)

    DiffusersVideo().clip(shot={**SHOT, "duration_s": 2.0}, style=STYLE, frame=first, fps=10,
                          out=tmp_path / "s.mp4", ctx=ctx)

    assert sweep.calls == [{"image_size": (64, 32), "num_frames": 5, "height": 32, "width": 64}]
    meta = probe(tmp_path / "s.mp4")
    assert (tuple(meta["size"]), meta["frames"]) == ((854, 480), 20)


def test_retime_cross_fades_between_model_frames():
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)

    frames = [np.frombuffer(data, np.uint8)[0] for data in dp.retime([black, white], 3, (2, 2))]

    assert frames == [0, 128, 255]


# Out of memory


class Flaky:
    """Stands in for a pipeline on a GPU: raises out-of-memory errors from a script, records what it was asked."""

    def __init__(self, failures, video: bool = False):
        self.failures = list(failures)
        self.video = video
        self.calls = []
        self.offloaded_to = None
        self.attention_slicing = False

    def to(self, device):
        return self

    def enable_model_cpu_offload(self, device=None):
        self.offloaded_to = device

    def enable_attention_slicing(self):
        self.attention_slicing = True

    def __call__(self, prompt=None, image=None, height=64, width=64, num_inference_steps=1, generator=None,
                 output_type="pil", decode_chunk_size=None, negative_prompt=None, guidance_scale=None):
        self.calls.append({"size": (width, height), "offloaded": self.offloaded_to is not None, "prompt": prompt,
                           "seed": generator.initial_seed(), "decode_chunk_size": decode_chunk_size})
        if self.failures:
            raise self.failures.pop(0)
        picture = Image.new("RGB", (width, height), (10, 200, 30))
        if self.video:
            return diffusers.utils.BaseOutput(frames=[[picture, picture]])
        return diffusers.utils.BaseOutput(images=[picture])


def oom():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def flaky(monkeypatch):
    def install(*failures, video: bool = False) -> Flaky:
        pipe = Flaky(failures, video=video)
        monkeypatch.setattr(dp, "_from_pretrained", lambda kind, path, dtype: pipe)
        return pipe
    return install


def test_out_of_memory_retries_with_offload_at_the_same_size(flaky, make_ctx, tmp_path):
    pipe = flaky(oom())
    ctx = make_ctx(device="cuda", image_model_path="/models/sdxl", prompts={"frame": "brand teal"})

    result = DiffusersImage().frame(shot={**SHOT, "seed": 7}, style=STYLE, out=tmp_path / "f.png", ctx=ctx)

    assert [call["size"] for call in pipe.calls] == [(64, 32), (64, 32)]
    assert [call["offloaded"] for call in pipe.calls] == [False, True]
    assert pipe.offloaded_to == "cuda"
    assert pipe.attention_slicing
    assert [call["seed"] for call in pipe.calls] == [dp.shot_seed({**SHOT, "seed": 7})] * 2
    assert pipe.calls[0]["prompt"].startswith("a red fox in snow. wide shot")
    assert pipe.calls[0]["prompt"].endswith("golden hour, soft film grain. brand teal")
    assert (result.usage["attempts"], result.usage["low_memory"], result.usage["dtype"]) == (2, True, "float16")
    with Image.open(tmp_path / "f.png") as image:
        assert image.size == (854, 480)


def test_out_of_memory_twice_falls_back_to_a_smaller_size_upscaled(flaky, make_ctx, tmp_path):
    pipe = flaky(oom(), RuntimeError("CUDA error: out of memory"))
    ctx = make_ctx(device="cuda", image_model_path="/models/sdxl")

    result = DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "f.png", ctx=ctx)

    assert [call["size"] for call in pipe.calls] == [(64, 32), (64, 32), (32, 16)]
    assert result.usage["working_size"] == [32, 16]
    with Image.open(tmp_path / "f.png") as image:
        assert image.size == (854, 480)


def test_out_of_memory_every_time_is_a_provider_error(flaky, make_ctx, tmp_path):
    pipe = flaky(oom(), oom(), oom())

    with pytest.raises(ProviderError, match="out of memory even with offload at 32x16"):
        DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "f.png",
                               ctx=make_ctx(device="cuda", image_model_path="/models/sdxl"))
    assert len(pipe.calls) == 3
    assert not (tmp_path / "f.png").exists()


def test_other_failures_are_not_retried(flaky, make_ctx, tmp_path):
    pipe = flaky(ValueError("bad scheduler config"))

    with pytest.raises(ProviderError, match="bad scheduler config"):
        DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "f.png",
                               ctx=make_ctx(device="cuda", image_model_path="/models/sdxl"))
    assert len(pipe.calls) == 1


def test_out_of_memory_drops_other_cached_pipelines(flaky, make_ctx, tmp_path):
    flaky(oom())
    dp._PIPELINES[("video", "/models/svd", "cuda", "float16")] = dp.LoadedPipeline(
        pipe=object(), path="/models/svd", device="cuda", dtype="float16")

    DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "f.png",
                           ctx=make_ctx(device="cuda", image_model_path="/models/sdxl"))

    assert [key[0] for key in dp._PIPELINES] == ["image"]


def test_video_out_of_memory_decodes_in_small_chunks(flaky, make_ctx, tmp_path):
    pipe = flaky(oom(), video=True)
    first = tmp_path / "first.png"
    Image.new("RGB", (854, 480)).save(first)

    result = DiffusersVideo().clip(shot=SHOT, style=STYLE, frame=first, fps=4, out=tmp_path / "c.mp4",
                                   ctx=make_ctx(device="cuda", video_model_path="/models/svd"))

    assert [call["decode_chunk_size"] for call in pipe.calls] == [None, 2]
    assert result.usage["attempts"] == 2
    assert probe(tmp_path / "c.mp4")["frames"] == 4


# The real GPU path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (GPU workers only)")
def test_gpu_frame_and_clip_in_half_precision(image_model_path, video_model_path, make_ctx, tmp_path):
    image = DiffusersImage().frame(shot=SHOT, style=STYLE, out=tmp_path / "g.png",
                                   ctx=make_ctx(device="cuda", image_model_path=image_model_path))
    clip = DiffusersVideo().clip(shot=SHOT, style=STYLE, frame=tmp_path / "g.png", fps=8, out=tmp_path / "g.mp4",
                                 ctx=make_ctx(device="cuda", video_model_path=video_model_path, num_frames=3))

    assert (image.usage["device"], image.usage["dtype"]) == ("cuda", "float16")
    assert Image.open(tmp_path / "g.png").size == (854, 480)
    assert probe(tmp_path / "g.mp4")["frames"] == 8
    assert clip.usage["device"] == "cuda"
