"""A loopback OpenAI-compatible server, run as its own process by the media tests (no Django in it):

    python generation/tests/openai_server.py     # prints "PORT <n>" once it listens on 127.0.0.1:<n>

It answers the endpoints the openai providers call with media it makes: chat completions (valid style,
script and storyboard JSON), moderations, images generations (a PNG of four coloured quadrants) and edits
(the uploaded image with its colours inverted), videos create/retrieve/content/remix (an MP4 made with
ffmpeg: the input reference held for the asked seconds, a remix solid green, with a tone), videos characters
create/retrieve (the upload must be an MP4 ffmpeg decodes, else 400 `invalid_video`; a create's
`characters[][id]` must name one, else 400 `unknown_character`), audio speech (a 440 Hz tone, 80 ms per
character, as WAV or any format ffmpeg writes).

Control, on the same port:
    POST /_control/script {"route": "images.generate", "replies": [{"status": 429, "headers": {...}}, ...]}
        a reply: status (an error answer) with optional code and headers, delay_s (answers late), or
        {"video_status": "failed", "error_code": "moderation_blocked"} for videos.create/remix, or
        {"polls": n} (the video is queued for n status checks first); {} answers normally.
    POST /_control/reset      forget the scripts, the requests and the characters
    GET /_control/requests    every request so far: route, method, path, authorization, body (JSON, or
                              the form's fields, a file as {"filename", "bytes", "sha256"}; a repeated
                              field as the list of its values)
    GET /_control/characters  every character made: {id: {"name", "video_sha256", "made_from" (the id of the
                              video whose content was uploaded, or None), "featured_in" (the ids of the
                              videos whose create named it)}}
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import deque
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps

QUADRANTS = ((220, 30, 30), (30, 200, 60), (40, 60, 220), (240, 220, 40))  # top-left, top-right, bottom-l, -r
REMIX_COLOUR = (0, 200, 0)
TONE_HZ = 440
SPEECH_RATE = 24000
SECONDS_PER_CHARACTER = 0.08
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

_lock = threading.Lock()
_scripts: dict[str, deque] = {}
_requests: list[dict] = []
_videos: dict[str, dict] = {}
_characters: dict[str, dict] = {}
_counter = iter(range(1, 1_000_000))


def quadrants_png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    for index, colour in enumerate(QUADRANTS):
        x, y = (index % 2) * half_w, (index // 2) * half_h
        image.paste(colour, (x, y, width if index % 2 else half_w, height if index // 2 else half_h))
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def tone_wav(seconds: float) -> bytes:
    samples = np.arange(int(SPEECH_RATE * seconds)) / SPEECH_RATE
    pcm = (np.sin(2 * np.pi * TONE_HZ * samples) * 12000).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SPEECH_RATE)
        wav.writeframes(pcm)
    return buffer.getvalue()


def _ffmpeg(args: list[str]) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True,
                   capture_output=True, timeout=120)


def render_video(size: str, seconds: int, reference: bytes | None, colour=None) -> bytes:
    width, height = (int(part) for part in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "still.png"
        if reference is not None:
            with Image.open(io.BytesIO(reference)) as image:
                ImageOps.fit(image.convert("RGB"), (width, height)).save(still)
        else:
            Image.new("RGB", (width, height), colour or REMIX_COLOUR).save(still)
        out = Path(tmp) / "video.mp4"
        # A white box runs along the top edge: a render moves (the review refuses a frozen picture), and the
        # picture below it stays the reference's, for the tests to compare.
        box = max(8, height // 18)
        _ffmpeg(["-loop", "1", "-framerate", "30", "-i", str(still), "-f", "lavfi", "-i",
                 f"sine=frequency={TONE_HZ}:sample_rate=48000", "-f", "lavfi", "-i",
                 f"color=c=white:s={box}x{box}:r=30", "-filter_complex",
                 f"[0:v][2:v]overlay=x='mod(t*{width // 2},{width - box})':y=0:shortest=1[v]",
                 "-map", "[v]", "-map", "1:a", "-t", str(seconds), "-c:v", "libx264",
                 "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p", "-c:a", "aac",
                 "-movflags", "+faststart", str(out)])
        return out.read_bytes()


def speech(text: str, audio_format: str) -> bytes:
    wav = tone_wav(max(0.3, len(text) * SECONDS_PER_CHARACTER))
    if audio_format == "wav":
        return wav
    if audio_format == "pcm":
        return wav[44:]
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.wav", Path(tmp) / f"out.{audio_format}"
        source.write_bytes(wav)
        codec = {"opus": ["-c:a", "libopus", "-f", "ogg"], "aac": ["-c:a", "aac", "-f", "adts"]}.get(audio_format, [])
        _ffmpeg(["-i", str(source), *codec, str(out)])
        return out.read_bytes()


# --- chat: what each text stage expects ---------------------------------------------------------------

def chat_answer(body: dict) -> dict:
    messages = body.get("messages") or []
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    if "art director" in system:
        content = {"name": "documentary", "tags": ["calm"], "visual_description": "Soft daylight",
                   "mood": "curious", "palette": ["#112233", "#445566", "#778899"]}
    elif "screenwriter" in system:
        duration = float(re.search(r"a ([\d.]+)-second video", user).group(1))
        scenes = int(re.search(r"about (\d+) scenes", user).group(1))
        content = {"title": "Stub", "synopsis": "A stub story.", "scenes": [
            {"description": f"Scene {n}", "narration": f"Scene {n} speaks.", "duration_s": round(duration / scenes, 2),
             "visual_notes": "", "audio_notes": ""} for n in range(1, scenes + 1)]}
    else:
        shots = int(re.search(r"exactly (\d+) shots", user).group(1))
        duration = float(re.search(r"add up to ([\d.]+)", user).group(1))
        content = {"shots": [{"number": n, "description": f"Shot {n}: a lighthouse", "dialogue": f"Line {n}.",
                              "camera_movement": "static", "shot_type": "wide",
                              "duration_s": round(duration / shots, 2), "composition": "centred",
                              "lighting": "soft"} for n in range(1, shots + 1)]}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(content)}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}


def video_object(video: dict) -> dict:
    return {"id": video["id"], "object": "video", "created_at": 0, "model": video["model"],
            "status": video["status"], "progress": 100 if video["status"] == "completed" else 10,
            "seconds": str(video["seconds"]), "size": video["size"], "prompt": video["prompt"],
            "remixed_from_video_id": video.get("remixed_from"),
            "error": {"code": video["error_code"], "message": "stub failure"} if video.get("error_code") else None}


# --- the server ---------------------------------------------------------------------------------------

ROUTES = [
    ("POST", re.compile(r"/v1/videos/characters$"), "videos.create_character"),
    ("GET", re.compile(r"/v1/videos/characters/(?P<id>[^/]+)$"), "videos.get_character"),
    ("POST", re.compile(r"/v1/chat/completions$"), "chat"),
    ("POST", re.compile(r"/v1/moderations$"), "moderations"),
    ("POST", re.compile(r"/v1/images/generations$"), "images.generate"),
    ("POST", re.compile(r"/v1/images/edits$"), "images.edit"),
    ("POST", re.compile(r"/v1/videos$"), "videos.create"),
    ("POST", re.compile(r"/v1/videos/(?P<id>[^/]+)/remix$"), "videos.remix"),
    ("GET", re.compile(r"/v1/videos/(?P<id>[^/]+)/content$"), "videos.content"),
    ("GET", re.compile(r"/v1/videos/(?P<id>[^/]+)$"), "videos.retrieve"),
    ("POST", re.compile(r"/v1/audio/speech$"), "audio.speech"),
    ("GET", re.compile(r"/v1/models$"), "models.list"),
]


def _form(content_type: str, raw: bytes) -> dict:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            value = {"filename": part.get_filename(), "bytes": payload, "sha256": hashlib.sha256(payload).hexdigest()}
        else:
            value = payload.decode()
        if name in fields:  # a repeated field (an array: characters[][id]) keeps every value
            fields[name] = [*(fields[name] if isinstance(fields[name], list) else [fields[name]]), value]
        else:
            fields[name] = value
    return fields


def _listed(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def is_mp4(data: bytes) -> bool:
    """An ISO media file (its first box is `ftyp`) whose video ffmpeg decodes."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.mp4"
        path.write_bytes(data)
        try:
            _ffmpeg(["-i", str(path), "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"])
        except subprocess.CalledProcessError:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _send(self, status: int, payload: bytes, content_type: str = "application/json", headers=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout test)

    def _json(self, status: int, body, headers=None):
        self._send(status, json.dumps(body).encode(), headers=headers)

    def _handle(self, method: str):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path.startswith("/_control/"):
            return self._control(method, path, raw)
        route, match = next(((name, m) for verb, pattern, name in ROUTES
                             if verb == method and (m := pattern.search(path))), (None, None))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            body = _form(content_type, raw)
        else:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
        with _lock:
            reply = _scripts.get(route, deque()).popleft() if _scripts.get(route) else {}
            _requests.append({"route": route, "method": method, "path": self.path,
                              "authorization": self.headers.get("Authorization"),
                              "body": _recordable(body)})
        if route is None:
            return self._json(404, {"error": {"message": "no such path", "type": "stub", "code": None}})
        if reply.get("delay_s"):
            time.sleep(reply["delay_s"])
        if reply.get("status"):
            return self._json(reply["status"], {"error": {"message": reply.get("message", "stub error"),
                                                          "type": "stub_error", "param": None,
                                                          "code": reply.get("code")}},
                              headers=reply.get("headers"))
        getattr(self, "_" + route.replace(".", "_"))(body or {}, match, reply)

    def _control(self, method: str, path: str, raw: bytes):
        with _lock:
            if path == "/_control/script" and method == "POST":
                order = json.loads(raw)
                _scripts.setdefault(order["route"], deque()).extend(order["replies"])
                return self._json(200, {"ok": True})
            if path == "/_control/reset" and method == "POST":
                _scripts.clear()
                _requests.clear()
                _characters.clear()
                return self._json(200, {"ok": True})
            if path == "/_control/requests":
                return self._json(200, _requests)
            if path == "/_control/characters":
                return self._json(200, _characters)
        return self._json(404, {"error": "no such control"})

    # Endpoints.

    def _models_list(self, body, match, reply):
        self._json(200, {"object": "list", "data": [{"id": "gpt-stub", "object": "model", "created": 0,
                                                     "owned_by": "stub"}]})

    def _chat(self, body, match, reply):
        self._json(200, chat_answer(body))

    def _moderations(self, body, match, reply):
        self._json(200, {"id": "modr-1", "model": "omni-moderation-latest", "results": [
            {"flagged": False, "categories": {}, "category_scores": {}, "category_applied_input_types": {}}]})

    def _images_generate(self, body, match, reply):
        width, height = (int(part) for part in (body.get("size") or "1024x1024").split("x"))
        self._json(200, {"created": 0, "data": [{"b64_json": base64.b64encode(quadrants_png(width, height)).decode()}]})

    def _images_edit(self, body, match, reply):
        upload = body.get("image") or body.get("image[]")
        with Image.open(io.BytesIO(upload["bytes"])) as image:
            inverted = ImageOps.invert(image.convert("RGB"))
        self._json(200, {"created": 0, "data": [{"b64_json": base64.b64encode(_png(inverted)).decode()}]})

    def _new_video(self, reply, **fields) -> dict:
        video = {"id": f"video_{next(_counter)}", "status": "queued", "polls": reply.get("polls", 1),
                 "error_code": reply.get("error_code"), "final": reply.get("video_status", "completed"), **fields}
        with _lock:
            _videos[video["id"]] = video
        return video

    def _videos_create(self, body, match, reply):
        reference = body.get("input_reference")
        featured = _listed(body.get("characters[][id]"))
        unknown = [character for character in featured if character not in _characters]
        if unknown:
            return self._json(400, {"error": {"message": f"no character {unknown[0]}", "type": "invalid_request_error",
                                              "param": "characters", "code": "unknown_character"}})
        video = self._new_video(reply, model=body.get("model", "sora-2"), seconds=int(body.get("seconds", 4)),
                                size=body.get("size", "720x1280"), prompt=body.get("prompt"),
                                reference=reference["bytes"] if isinstance(reference, dict) else None)
        with _lock:
            for character in featured:
                _characters[character]["featured_in"].append(video["id"])
        self._json(200, video_object(video))

    def _videos_create_character(self, body, match, reply):
        upload = body.get("video")
        if not isinstance(upload, dict) or not is_mp4(upload["bytes"]):
            return self._json(400, {"error": {"message": "the video is not an MP4", "type": "invalid_request_error",
                                              "param": "video", "code": "invalid_video"}})
        digest = hashlib.sha256(upload["bytes"]).hexdigest()
        with _lock:
            # The latest video served with these bytes (renders of the same request are byte-identical).
            made_from = next((v["id"] for v in reversed(list(_videos.values())) if v.get("content_sha256") == digest),
                             None)
            character = {"id": f"char_{next(_counter)}", "name": body.get("name") or "", "created_at": int(time.time()),
                         "video_sha256": digest, "made_from": made_from, "featured_in": []}
            _characters[character["id"]] = character
        self._json(200, {key: character[key] for key in ("id", "name", "created_at")})

    def _videos_get_character(self, body, match, reply):
        character = _characters.get(match["id"])
        if character is None:
            return self._json(404, {"error": {"message": "no such character", "type": "stub", "code": None}})
        self._json(200, {key: character[key] for key in ("id", "name", "created_at")})

    def _videos_remix(self, body, match, reply):
        source = _videos.get(match["id"])
        if source is None:
            return self._json(404, {"error": {"message": "no such video", "type": "stub", "code": None}})
        video = self._new_video(reply, model=source["model"], seconds=source["seconds"], size=source["size"],
                                prompt=body.get("prompt"), reference=None, remixed_from=source["id"])
        self._json(200, video_object(video))

    def _videos_retrieve(self, body, match, reply):
        video = _videos.get(match["id"])
        if video is None:
            return self._json(404, {"error": {"message": "no such video", "type": "stub", "code": None}})
        with _lock:
            if video["polls"] > 0:
                video["polls"] -= 1
                video["status"] = "in_progress"
            else:
                video["status"] = video["final"]
        self._json(200, video_object(video))

    def _videos_content(self, body, match, reply):
        video = _videos.get(match["id"])
        if video is None or video["status"] != "completed":
            return self._json(404, {"error": {"message": "not ready", "type": "stub", "code": None}})
        if "content" not in video:  # made once: a character made from it is then traced back to this video
            content = render_video(video["size"], video["seconds"], video.get("reference"))
            with _lock:
                video.setdefault("content", content)
                video["content_sha256"] = hashlib.sha256(video["content"]).hexdigest()
        self._send(200, video["content"], "video/mp4")

    def _audio_speech(self, body, match, reply):
        audio_format = body.get("response_format", "mp3")
        self._send(200, speech(body["input"], audio_format), f"audio/{audio_format}")


def _recordable(body):
    if isinstance(body, dict):
        return {key: _recordable_value(value) for key, value in body.items()}
    return body


def _recordable_value(value):
    if isinstance(value, list):  # a repeated form field
        return [_recordable_value(item) for item in value]
    if isinstance(value, dict) and "bytes" in value:
        return {k: v for k, v in value.items() if k != "bytes"}
    return value


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
