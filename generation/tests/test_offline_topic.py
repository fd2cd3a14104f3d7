"""The offline animatic shows the topic (issue 13, parts 4 and 5): the planner reads the topic's subject, setting
and action and writes lines of its own, in English or Chinese, sized for their shots; the painter draws the
setting and subject the shot description names, and records what it drew.

No database: the providers run on plain data at 480p.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.providers.base import StageContext
from generation.providers.offline import OfflineImage
from generation.providers.offline.common import SETTINGS, SUBJECTS, language_detect
from generation.providers.offline.image import scene_pick
from generation.providers.offline.text import line_budget, line_size, topic_parse
from generation.styles import STYLE_CATALOGUE
from generation.tests.test_offline import plan as offline_plan
from projects import schemas

# The old planner's fill-in sentences ("This is {topic}.", ...): none may come back.
OLD_TEMPLATE_PHRASES = ["This is ", "Let us begin with", "Look closer, and every detail of", "reveals what we usually",
                        "Then something changes, and", "But there is more to", "than first meets the eye",
                        "At its peak,", "was building towards", "stays with us, long after", "worth a second look",
                        "An establishing view that introduces", "The world of", "A closer look at the details"]


def make_ctx(tmp_path: Path, organization_id: int = 1, language: str | None = None) -> StageContext:
    options = {"resolution": "480p", "aspect_ratio": "16:9"}
    if language:
        options["language"] = language
    return StageContext(organization_id=organization_id, job_id="job-1", options=options, prompts={},
                        work_dir=tmp_path)


def plan(topic: str, ctx: StageContext, duration_s: float = 30.0, shots: int = 8):
    return offline_plan(topic, ctx, duration_s=duration_s, shots=shots)  # test_offline.py's, at 30 s and 8 shots


def frames(board: dict, style: dict, ctx: StageContext, tmp_path: Path) -> list[dict]:
    """Each shot's record of what its frame shows."""
    return [OfflineImage().frame(shot=shot, style=style, out=tmp_path / f"frame-{shot['number']}.png",
                                 ctx=ctx).usage["drawn"] for shot in board["shots"]]


# --- the topic, read --------------------------------------------------------------------------------

@pytest.mark.parametrize("topic, subject, setting, kind", [
    ("a lighthouse keeper's last night", "lighthouse keeper", "lighthouse", "person"),
    ("a reusable glass water bottle", "reusable glass water bottle", "tabletop", "bottle"),
    ("Lanterns drifting over a mountain lake", "lanterns", "lake", "lantern"),
    ("A fox in the forest at dawn", "fox", "forest", "animal"),
    ("The last spaceship leaves the dying galaxy", "last spaceship", "space", "aircraft"),
])
def test_topic_parse_finds_subject_setting_and_action(topic, subject, setting, kind):
    parsed = topic_parse(topic, "en")
    assert (parsed["subject"], parsed["setting"], parsed["subject_kind"]) == (subject, setting, kind)
    assert topic_parse("a lighthouse keeper's last night", "en")["event"] == "last night"
    assert topic_parse("Lanterns drifting over a mountain lake", "en")["action"] == "drifting"


def test_chinese_topic_parse():
    parsed = topic_parse("灯塔看守人的最后一夜", "zh")
    assert (parsed["subject"], parsed["event"], parsed["setting"], parsed["subject_kind"], parsed["time"]) == (
        "灯塔看守人", "最后一夜", "lighthouse", "person", "night")
    parsed = topic_parse("一只狐狸在森林里奔跑", "zh")
    assert (parsed["subject"], parsed["place"], parsed["action"], parsed["setting"], parsed["subject_kind"]) == (
        "狐狸", "森林", "奔跑", "forest", "animal")


@pytest.mark.parametrize("text, language", [("灯塔看守人的最后一夜", "zh"), ("a lighthouse keeper", "en"),
                                            ("我们的 coffee 品牌发布", "zh"), ("The Great Wall 长城 at dawn", "en"),
                                            ("", "en")])
def test_language_detection(text, language):
    assert language_detect(text) == language


# --- the script -----------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["a lighthouse keeper's last night", "a reusable glass water bottle",
                                   "Lanterns drifting over a mountain lake", "A city that never sleeps",
                                   "Grandparents remember the 1950s"])
def test_lines_of_an_eight_shot_script_are_all_different_and_written(tmp_path, topic):
    _style, script, board = plan(topic, make_ctx(tmp_path))
    lines = [shot["dialogue"] for shot in board["shots"]]
    assert len(lines) == 8 and all(lines), lines
    assert len(set(lines)) == 8, lines
    assert len({line.split()[0] for line in lines}) >= 5, lines  # they do not all open alike either
    narration = " ".join(scene["narration"] for scene in script["scenes"])
    for phrase in OLD_TEMPLATE_PHRASES:
        assert phrase not in narration, phrase
    assert not re.search(r"\{\w+\}", narration)
    # The topic is read, not pasted: at most one line says it whole (as its subject doing its action).
    assert sum(topic.lower().removeprefix("a ") in line.lower() for line in lines) <= 1, lines
    assert script["language"] == board["language"] == "en"


def test_each_line_fits_its_shot(tmp_path):
    for topic, shots, duration_s in (("a lighthouse keeper's last night", 8, 30), ("灯塔看守人的最后一夜", 8, 30),
                                     ("a reusable glass water bottle", 5, 12), ("Lanterns drifting over a lake", 4, 8)):
        _style, _script, board = plan(topic, make_ctx(tmp_path), duration_s, shots)
        for shot in board["shots"]:
            language = board["language"]
            assert line_size(shot["dialogue"], language) <= line_budget(shot["duration_s"], language), shot
        assert abs(sum(shot["duration_s"] for shot in board["shots"]) - duration_s) < 0.011


def test_lines_use_the_topics_parts(tmp_path):
    _style, script, board = plan("a lighthouse keeper's last night", make_ctx(tmp_path))
    text = " ".join(shot["dialogue"] for shot in board["shots"]).lower()
    assert "keeper" in text and "lighthouse" in text
    for shot in board["shots"]:  # the description names the setting and the subject, for the painter
        assert "lighthouse" in shot["description"] and "keeper" in shot["description"], shot["description"]


def test_a_chinese_topic_gives_a_chinese_plan(tmp_path):
    _style, script, board = plan("灯塔看守人的最后一夜", make_ctx(tmp_path))
    assert script["language"] == board["language"] == "zh"
    schemas.validate(script, schemas.SCRIPT, "script")
    schemas.validate(board, schemas.STORYBOARD, "storyboard")
    lines = [shot["dialogue"] for shot in board["shots"]]
    assert len(set(lines)) == 8
    for text in lines + [shot["description"] for shot in board["shots"]] + [s["narration"] for s in script["scenes"]]:
        assert len(re.findall(r"[\u4e00-\u9fff]", text)) >= 0.8 * len(re.sub(r"[\s，。：、；！？]", "", text)), text
        assert not re.search(r"[A-Za-z]{3,}", text), text
    assert all("灯塔" in shot["description"] for shot in board["shots"])


def test_the_language_option_overrides_detection(tmp_path):
    _style, script, board = plan("灯塔看守人的最后一夜", make_ctx(tmp_path, language="en"))
    assert script["language"] == board["language"] == "en"
    _style, script, board = plan("a lighthouse keeper's last night", make_ctx(tmp_path, language="zh"))
    assert board["language"] == "zh"
    assert all(re.search(r"[\u4e00-\u9fff]", shot["dialogue"]) for shot in board["shots"])


def test_older_artifacts_without_a_language_stay_valid():
    schemas.validate({"title": "T", "synopsis": "S", "scenes": [{"description": "d", "narration": "", "duration_s": 1,
                                                                  "visual_notes": "", "audio_notes": ""}]},
                     schemas.SCRIPT, "script")
    shot = {"number": 1, "description": "d", "dialogue": "", "camera_movement": "static", "shot_type": "wide",
            "duration_s": 1, "composition": "", "lighting": ""}
    schemas.validate({"shots": [shot]}, schemas.STORYBOARD, "storyboard")
    with pytest.raises(schemas.SchemaError):
        schemas.validate({"language": "fr", "shots": [shot]}, schemas.STORYBOARD, "storyboard")


# --- the frames -----------------------------------------------------------------------------------

def test_the_lighthouse_keepers_frames_show_a_lighthouse_and_the_sea(tmp_path):
    ctx = make_ctx(tmp_path)
    style, _script, board = plan("a lighthouse keeper's last night", ctx)
    for record in frames(board, style, ctx, tmp_path):
        assert record["setting"] == "lighthouse" and record["subject"] == "person", record
        assert {"lighthouse", "sea", "beam", "person"} <= set(record["elements"]), record
        assert record["time"] == "night" and "moon" in record["elements"]


def test_the_bottles_frames_show_a_bottle(tmp_path):
    ctx = make_ctx(tmp_path)
    style, _script, board = plan("a reusable glass water bottle", ctx)
    assert style["name"] == "commercial"
    for record in frames(board, style, ctx, tmp_path):
        assert record["subject"] == "bottle" and {"bottle", "cap"} <= set(record["elements"]), record
        assert "cup" not in record["elements"] and "steam" not in record["elements"]


def test_a_chinese_description_is_drawn_too(tmp_path):
    ctx = make_ctx(tmp_path)
    style, _script, board = plan("灯塔看守人的最后一夜", ctx)
    for record in frames(board, style, ctx, tmp_path):
        assert record["setting"] == "lighthouse" and "sea" in record["elements"] and record["subject"] == "person"


# One English and one Chinese word for each setting and subject kind.
SETTING_WORDS = {
    "coast": ("a quiet beach", "海边"), "lighthouse": ("an old lighthouse", "灯塔"), "forest": ("a dark forest", "森林"),
    "mountains": ("the mountains", "高山"), "lake": ("a river", "湖泊"), "desert": ("the desert", "沙漠"),
    "snow": ("deep snow", "雪地"), "street": ("a city street", "街道"), "skyline": ("the skyline", "天际线"),
    "room": ("a bedroom", "卧室"), "tabletop": ("on a table", "桌面"), "office": ("the office", "办公室"),
    "stage": ("a theatre stage", "舞台"), "space": ("outer space", "太空"), "underwater": ("underwater", "海底"),
    "field": ("a meadow", "田野"),
}
SUBJECT_WORDS = {
    "person": ("a woman", "老人"), "group": ("a crowd", "一群人"), "animal": ("a fox", "狐狸"),
    "animals": ("a herd", "羊群"), "bottle": ("a bottle", "水瓶"), "drink": ("a coffee", "咖啡"),
    "food": ("a cake", "蛋糕"), "device": ("a phone", "手机"), "vehicle": ("a car", "汽车"), "boat": ("a sailboat", "帆船"),
    "aircraft": ("a rocket", "火箭"), "building": ("a castle", "城堡"), "plant": ("a flower", "盆栽"),
    "lantern": ("a lantern", "灯笼"), "robot": ("a robot", "机器人"),
}


def test_the_vocabulary_covers_every_setting_and_subject():
    assert set(SETTING_WORDS) == set(SETTINGS) and len(SETTINGS) >= 16
    assert set(SUBJECT_WORDS) == set(SUBJECTS) and len(SUBJECTS) >= 12


@pytest.mark.parametrize("setting", sorted(SETTING_WORDS))
def test_every_setting_is_reachable_and_drawn(tmp_path, setting):
    for word in SETTING_WORDS[setting]:
        assert scene_pick(f"Wide shot of {word}")["setting"] == setting, word
    shot = {"number": 1, "description": f"Wide shot of {SETTING_WORDS[setting][0]}", "shot_type": "wide"}
    result = OfflineImage().frame(shot=shot, style=STYLE_CATALOGUE["cinematic"], out=tmp_path / "f.png",
                                  ctx=make_ctx(tmp_path))
    assert result.usage["drawn"]["setting"] == setting and len(result.usage["drawn"]["elements"]) >= 2


@pytest.mark.parametrize("subject", sorted(SUBJECT_WORDS))
def test_every_subject_is_reachable_and_drawn(tmp_path, subject):
    for word in SUBJECT_WORDS[subject]:
        assert scene_pick(f"Medium shot of {word}")["subject"] == subject, word
    shot = {"number": 1, "description": f"Medium shot of {SUBJECT_WORDS[subject][0]}", "shot_type": "medium"}
    style, ctx = STYLE_CATALOGUE["nature"], make_ctx(tmp_path)
    drawn = OfflineImage().frame(shot=shot, style=style, out=tmp_path / "f.png", ctx=ctx).usage["drawn"]
    bare = OfflineImage().frame(shot=dict(shot, description=f"Medium shot of {drawn['setting']}"), style=style,
                                out=tmp_path / "bare.png", ctx=ctx).usage["drawn"]
    assert drawn["subject"] == subject and bare["subject"] is None
    assert set(drawn["elements"]) - set(bare["elements"]), drawn  # the subject's own shapes were drawn


def test_the_subject_is_small_in_a_wide_shot_and_large_in_a_close_up(tmp_path):
    """The bottle's cap colour (the style's accent) covers more of the frame as the shot closes in."""
    style = STYLE_CATALOGUE["commercial"]
    accent = np.array([int(style["palette"][3][i:i + 2], 16) for i in (1, 3, 5)])
    coverage = []
    for shot_type in ("extreme_wide", "wide", "medium", "close"):
        shot = {"number": 1, "description": "A glass bottle on a table", "shot_type": shot_type}
        out = OfflineImage().frame(shot=shot, style=style, out=tmp_path / f"{shot_type}.png",
                                   ctx=make_ctx(tmp_path)).value
        pixels = np.asarray(Image.open(out).convert("RGB"), np.int16)
        coverage.append(float((np.abs(pixels - accent).sum(axis=2) < 40).mean()))
    assert coverage == sorted(coverage) and coverage[-1] > 10 * coverage[0], coverage


def test_frames_stay_deterministic_and_part_between_studios(tmp_path):
    shot = {"number": 1, "description": "Wide shot of the lighthouse at night: the lighthouse keeper",
            "shot_type": "wide"}
    style = STYLE_CATALOGUE["cinematic"]
    digests = {}
    for name, organization in (("ours", 7), ("again", 7), ("theirs", 8)):
        out = tmp_path / f"{name}.png"
        OfflineImage().frame(shot=shot, style=style, out=out, ctx=make_ctx(tmp_path, organization_id=organization))
        digests[name] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digests["ours"] == digests["again"] != digests["theirs"]
