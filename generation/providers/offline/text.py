"""OfflineText: the style by keyword scoring, a script written from the topic's subject, setting and action, and a
storyboard whose shot durations sum exactly to the requested duration, in English or Chinese."""
from __future__ import annotations

import math
import random
import re

from generation.providers.base import ProviderRefused, Result, StageContext
from generation.providers.offline.common import (
    LANGUAGES,
    SETTINGS,
    SMALL_WORDS,
    SUBJECTS,
    TIMES,
    capitalized,
    digest_int,
    language_resolve,
    mid_sentence,
    prompt_of,
    text_clip,
    vocabulary_pick,
    word_stem,
    words_of,
)
from generation.styles import STYLE_CATALOGUE
from projects import schemas

# --- Reading a topic ---------------------------------------------------------------------------------
# Simple rules, no model: a possessive ("a keeper's last night"), a verb ("lanterns drifting ...", "the last
# spaceship leaves ..."), or a preposition ("a fox in the forest") splits the topic into its subject, its action
# or event, and its setting; the scene vocabulary (common.py) names the kinds the painter can draw.

EN_PREPOSITIONS = {"in", "on", "at", "over", "under", "through", "across", "by", "near", "inside", "beneath", "along",
                   "above", "into", "onto", "around", "beside", "below", "among", "within", "behind", "beyond",
                   "toward", "towards", "past", "underneath", "amid"}
EN_DETERMINERS = {"a", "an", "the", "our", "my", "your", "their", "his", "her", "its", "this", "that", "these",
                  "those", "some", "one", "every"}
EN_QUESTIONS = {"how", "why", "what", "when", "where", "who"}
EN_RELATIVES = {"that", "who", "which"}
EN_NOT_VERBS = {"morning", "evening", "building", "king", "ring", "spring", "thing", "nothing", "something",
                "everything", "anything", "ceiling", "painting", "wedding", "clothing", "string", "wing", "sibling",
                "pudding", "darling", "lightning", "dumpling", "offspring", "sling", "swing", "duckling", "viking"}
EN_VERBS = {"leaves", "leave", "meets", "finds", "returns", "walks", "runs", "flies", "crosses", "guards", "dances",
            "sings", "travels", "explores", "discovers", "wakes", "sleeps", "remembers", "builds", "grows", "falls",
            "rises", "comes", "goes", "lands", "sails", "drifts", "waits", "becomes", "keeps", "saves", "loses",
            "searches", "fights", "climbs", "swims", "hunts", "plays", "learns", "makes", "remember", "meet",
            "is", "are", "was", "were", "has", "have", "gets", "takes", "brings", "opens", "changes", "lives"}
EN_IRREGULAR_PLURALS = {"people", "children", "men", "women", "sheep", "deer", "mice", "geese", "fish", "cattle"}
ZH_CLASSIFIERS = re.compile(r"^(一个|一只|一位|一名|一瓶|一辆|一艘|一座|一棵|一盏|一杯|一台|一部|这个|那个|这只|那只|一条)")
ZH_PLACE_SUFFIX = "里中上下边旁间内外"

# What a subject does when the topic does not say (singular, plural), and the details a line can look at.
SUBJECT_WORDS = {
    "person": (("keeps watch", "keep watch"), ["weathered hands", "a steady gaze", "a worn coat"],
               "守望着", ["粗糙的双手", "坚定的目光", "旧外套"]),
    "group": (("gathers close", "gather close"), ["familiar faces", "shared laughter", "hands held together"],
              "聚在一起", ["熟悉的面孔", "笑声", "紧握的手"]),
    "animal": (("moves quietly", "move quietly"), ["bright eyes", "soft fur", "quiet paws"],
               "悄悄走动", ["明亮的眼睛", "柔软的皮毛", "轻轻的脚步"]),
    "animals": (("moves as one", "move as one"), ["many eyes", "the moving herd", "small tracks"],
                "一起前行", ["许多双眼睛", "移动的队伍", "细小的足迹"]),
    "bottle": (("catches the light", "catch the light"), ["the clear glass", "the cap", "the water inside"],
               "映着光", ["透明的玻璃", "瓶盖", "瓶中的水"]),
    "drink": (("steams gently", "steam gently"), ["the rising steam", "the warm cup", "the first sip"],
              "冒着热气", ["升起的热气", "温热的杯子", "第一口"]),
    "food": (("waits, still warm", "wait, still warm"), ["the golden crust", "the fresh colours", "the first bite"],
             "散发着香气", ["金黄的外皮", "新鲜的色彩", "第一口"]),
    "device": (("lights up", "light up"), ["the bright screen", "the smooth edges", "a single tap"],
               "亮了起来", ["明亮的屏幕", "光滑的边缘", "轻轻一点"]),
    "vehicle": (("rolls forward", "roll forward"), ["the headlights", "the turning wheels", "the polished doors"],
                "缓缓驶过", ["车灯", "转动的车轮", "锃亮的车门"]),
    "boat": (("rides the swell", "ride the swell"), ["the white sail", "the wet deck", "the rope"],
             "随波起伏", ["白帆", "湿漉漉的甲板", "缆绳"]),
    "aircraft": (("climbs higher", "climb higher"), ["the engines", "the bright hull", "a trail of fire"],
                 "越飞越高", ["引擎", "明亮的机身", "一道光迹"]),
    "building": (("stands firm", "stand firm"), ["the old walls", "the bright windows", "the open door"],
                 "静静矗立", ["古老的墙", "亮着的窗", "敞开的门"]),
    "plant": (("reaches upward", "reach upward"), ["the green leaves", "a new bud", "the thin stem"],
              "向着光生长", ["绿叶", "新芽", "细细的茎"]),
    "lantern": (("glows softly", "glow softly"), ["the warm glow", "the paper skin", "the small flame"],
                "发着暖光", ["温暖的光", "薄薄的纸面", "小小的火焰"]),
    "robot": (("comes to life", "come to life"), ["the glowing eyes", "the metal joints", "a soft hum"],
              "苏醒过来", ["发光的眼睛", "金属关节", "轻微的嗡鸣"]),
    None: (("waits", "wait"), ["the shapes", "the colours", "the shadows"], "静静等待", ["轮廓", "色彩", "影子"]),
}
# Each setting: its name in a sentence, three details (English, then Chinese); details avoid the words of
# other settings and subjects, so a shot description still names only its own.
SETTING_WORDS = {
    "lighthouse": ("the lighthouse", "at", ["the turning beam", "the black rocks", "the restless sea"],
                   "灯塔", ["旋转的光束", "黑色的礁石", "不安的海面"]),
    "underwater": ("the underwater reef", "on", ["drifting bubbles", "the swaying kelp", "a shaft of light"],
                   "海底", ["上升的气泡", "摇曳的海草", "一束光"]),
    "space": ("deep space", "in", ["the distant stars", "a pale planet", "the silence"],
              "太空", ["遥远的星辰", "苍白的行星", "寂静"]),
    "stage": ("the stage", "on", ["the spotlight", "the red curtain", "the waiting seats"],
              "舞台", ["聚光灯", "红色的幕布", "等待的座位"]),
    "office": ("the office", "in", ["the glowing monitors", "the long desk", "the window blinds"],
               "办公室", ["发亮的显示器", "长长的办公桌", "百叶窗"]),
    "room": ("the quiet room", "in", ["the window", "the old wallpaper", "the wooden floor"],
             "房间", ["窗户", "旧墙纸", "木地板"]),
    "tabletop": ("the clean tabletop", "on", ["the studio light", "a soft shadow", "the smooth surface"],
                 "桌面", ["柔和的灯光", "淡淡的影子", "光滑的台面"]),
    "street": ("the busy street", "on", ["the traffic signals", "the wet pavement", "the bright storefronts"],
               "街道", ["红绿灯", "湿漉漉的路面", "明亮的橱窗"]),
    "skyline": ("the city skyline", "beneath", ["the lit windows", "the high rooftops", "the evening haze"],
                "城市天际线", ["亮着的窗", "高楼", "暮色"]),
    "desert": ("the desert", "in", ["the rolling dunes", "the hot wind", "the endless sand"],
               "沙漠", ["起伏的沙丘", "热风", "无尽的沙"]),
    "snow": ("the snowfield", "on", ["the falling snow", "the frozen branches", "the blue shadows"],
             "雪原", ["飘落的雪", "冰封的树枝", "蓝色的阴影"]),
    "lake": ("the lake", "by", ["the still water", "the reflections", "the far bank"],
             "湖面", ["平静的水面", "倒影", "远处的岸"]),
    "mountains": ("the mountains", "among", ["the high peaks", "the thin air", "the long ridge"],
                  "群山", ["高耸的山峰", "稀薄的空气", "绵长的山脊"]),
    "forest": ("the forest", "in", ["the tall pines", "the mossy ground", "the filtered light"],
               "森林", ["高大的松树", "长满青苔的地面", "透进林间的光"]),
    "coast": ("the coast", "on", ["the rolling waves", "the salt wind", "the wet sand"],
              "海岸", ["翻滚的浪", "咸咸的海风", "湿润的沙滩"]),
    "field": ("the open field", "in", ["the tall grass", "the wide sky", "the low fence"],
              "田野", ["高高的草", "辽阔的天空", "矮矮的篱笆"]),
}
OUTDOOR = {"lighthouse", "street", "skyline", "desert", "snow", "lake", "mountains", "forest", "coast", "field"}
# Where a subject is drawn when the topic names no place, else the style's usual place.
SUBJECT_SETTING = {"bottle": "tabletop", "drink": "tabletop", "food": "tabletop", "device": "tabletop",
                   "vehicle": "street", "boat": "coast", "aircraft": "skyline", "robot": "office",
                   "animal": "forest", "animals": "field", "lantern": "lake", "plant": "room", "building": "field"}
STYLE_SETTING = {"scifi": "space", "futuristic": "skyline", "urban": "street", "nature": "forest",
                 "fantasy": "mountains", "commercial": "tabletop", "documentary": "field", "vintage": "room",
                 "minimalist": "tabletop", "artistic": "stage"}
SETTING_STYLE = {"lighthouse": "cinematic", "underwater": "nature", "space": "scifi", "stage": "artistic",
                 "office": "documentary", "tabletop": "commercial", "street": "urban", "skyline": "urban",
                 "desert": "cinematic", "snow": "nature", "lake": "nature", "mountains": "nature", "forest": "nature",
                 "coast": "nature", "field": "nature"}
SUBJECT_STYLE = {"bottle": "commercial", "drink": "commercial", "food": "commercial", "device": "commercial",
                 "robot": "futuristic"}
TIME_WORDS = {"night": ("tonight", "at night", "今夜", "夜晚"), "dawn": ("at dawn", "at dawn", "黎明时分", "黎明"),
              "dusk": ("at dusk", "at dusk", "黄昏时分", "黄昏"), None: ("today", "", "这一天", "白天")}


def _en_plural(head: str) -> bool:
    head = head.lower()
    return head in EN_IRREGULAR_PLURALS or (len(head) > 3 and head.endswith("s")
                                             and not head.endswith(("ss", "us", "is", "ous")))


def _en_core(tokens: list[str]) -> str:
    """A noun phrase without its leading determiners ("A lighthouse keeper" -> "lighthouse keeper")."""
    while tokens and tokens[0].lower() in EN_DETERMINERS:
        tokens = tokens[1:]
    return " ".join(tokens).strip(" ,;:")


def _en_parse(topic: str) -> dict:
    tokens = [t for t in re.sub(r"[.!?]+$", "", topic.strip()).split() if t]
    if tokens and tokens[0][:1].isupper() and tokens[0][1:].islower():  # a capital only because it starts the topic
        tokens[0] = tokens[0].lower()
    lower = [t.lower().strip(",;:\"") for t in tokens]
    while len(lower) > 1 and lower[0] in EN_QUESTIONS:
        tokens, lower = tokens[1:], lower[1:]
    subject, action, event, place = tokens, [], [], []
    owner = next((i for i, t in enumerate(lower) if re.search(r"['’]s$|s['’]$", t)), None)
    if owner is not None:
        subject = tokens[:owner] + [re.sub(r"['’]s?$", "", tokens[owner])]
        rest, rest_lower = tokens[owner + 1:], lower[owner + 1:]
        cut = next((i for i, t in enumerate(rest_lower) if t in EN_PREPOSITIONS), len(rest))
        event, place = rest[:cut], rest[cut:]
    else:
        verb = next((i for i, t in enumerate(lower) if t in EN_VERBS or t in EN_RELATIVES and i
                     or (t.endswith("ing") and len(t) > 4 and t not in EN_NOT_VERBS)), None)
        start = verb if verb is not None else 0
        prep = next((i for i in range(start + 1 if verb is not None else 1, len(lower)) if lower[i] in EN_PREPOSITIONS),
                    len(tokens))
        if verb is not None:
            subject, action, place = tokens[:verb], tokens[verb:prep], tokens[prep:]
            if action and action[0].lower() in EN_RELATIVES:
                action = action[1:]
            if not subject:  # "Launching our new coffee brand": the action's object is the subject
                subject, action = action[1:], []
        else:
            subject, place = tokens[:prep], tokens[prep:]
    return {"subject": _en_core(subject), "action": " ".join(action).strip(" ,;:"),
            "event": " ".join(event).strip(" ,;:"), "place": " ".join(place)}


def _zh_parse(topic: str) -> dict:
    text = re.sub(r"[。！？.!?\s]+$", "", topic.strip())
    subject, action, event, place = text, "", "", ""
    if "在" in text[1:]:
        at = text.index("在", 1)
        subject, rest = text[:at], text[at + 1:]
        match = re.match(rf"(.+?)[{ZH_PLACE_SUFFIX}](.*)$", rest)
        place, action = (match.group(1), match.group(2)) if match else (rest, "")
    elif "的" in text[1:]:
        head, tail = text.split("的", 1)
        if head[-1] in ZH_PLACE_SUFFIX and len(head) > 1:
            place, subject = head[:-1], tail
        else:
            subject, event = head, tail
    return {"subject": ZH_CLASSIFIERS.sub("", subject).strip("，,、 ") or subject, "action": action.strip("，,、 "),
            "event": event.strip("，,、 "), "place": place.strip("，,、 ")}


def topic_parse(topic: str, language: str, style_name: str = "") -> dict:
    """The topic's subject, action, event and setting, with the kinds of subject and setting the painter draws."""
    topic = " ".join((topic or "").split())[:300]
    parts = _zh_parse(topic) if language == "zh" else _en_parse(topic)
    subject_kind = vocabulary_pick(parts["subject"], SUBJECTS) or vocabulary_pick(topic, SUBJECTS)
    setting = (vocabulary_pick(parts["place"], SETTINGS) or vocabulary_pick(topic, SETTINGS)
               or SUBJECT_SETTING.get(subject_kind) or STYLE_SETTING.get(style_name) or "field")
    time_of_day = vocabulary_pick(topic, TIMES)
    return {**parts, "language": language, "subject_kind": subject_kind, "setting": setting, "time": time_of_day}


# --- Writing the lines -----------------------------------------------------------------------------
# Each beat has several sentences; a line is one sentence, chosen unused and of a length that fits its shot.
# Placeholders: {S} the subject ("the lighthouse keeper"), {Ss} its short form ("the keeper"), {P} the place,
# {T} the time ("tonight"), {act} what the subject does (agreeing with it), {be}, {E} the event of a
# possessive topic ("last night"), {poss} ("the lighthouse keeper's"), {d0}-{d2} the place's details,
# {k0}-{k2} the subject's. A sentence naming {E} or {act} from the topic is used only when the topic has one.

EN_LINES = {
    "opening": ["[out]{T_}, {P~lie} quiet.", "Far off, {d0} and {d1} frame {P}.",
                "[out]{T_}, {P~wait} under a wide sky.",
                "[in]{T_}, {P~wait} in silence.", "{atP_}, {S} {act}.", "{poss_} {E} begins here, {atP}.",
                "Everything starts with {d0}.", "First there is only {P}, and {d0}."],
    "detail": ["Up close, {k0~say} more than words.", "Look at {k0}, and then at {k1}.", "{k0_~hold} the light.",
               "Every detail counts here: {k0}, {k1}.", "Closer still, {Ss} {be} all we see.",
               "{k2_~catch} the eye next.", "In the details, {Ss~come} into focus."],
    "turn": ["Then {d1~shift}, and so does the mood.", "Something changes {T}, quietly at first.",
             "{Ss_~pause}, and {d2~answer}.", "Nothing stays the same {atP} for long.",
             "A sound, a shadow, and the moment turns.", "Without warning, {d2~draw} closer."],
    "peak": ["Now {S} {act}, and nothing else matters.", "For one breath, {P~belong} to {Ss}.",
             "Here it all comes together: {Ss}, {d0}, the light.", "{Ss_} {be} at {its} most {mood} now.",
             "Right now, {Ss} and {P} are one picture.", "The whole scene leans toward {Ss}."],
    "resolution": ["{T_}, {P~settle} back into stillness.", "And when {d0~fade}, {Ss~remain}.",
                   "The light moves on; {Ss~stay}.", "Tomorrow, {d0} will return to {P}.",
                   "{poss_} {E} ends softly, as it began.", "In the end, only {d0~keep} moving."],
}
ZH_LINES = {
    "opening": ["{T}，{P}静静地立着。", "{d0}和{d1}之间，是{P}。", "故事从{P}开始。", "{P}旁，{S}{act}。",
                "这是{S}的{E}。", "一切从{d0}说起。", "起初，只有{P}和{d0}。"],
    "detail": ["走近一点，{k0}清晰可见。", "看{k0}，再看{k1}。", "{k0}映着微光。", "每个细节都有分量：{k0}、{k1}。",
               "{k2}里藏着许多往事。", "细节之中，{S}渐渐清晰。"],
    "turn": ["忽然，{d1}变了。", "{T}，有什么悄悄改变了。", "{S}停了下来，{d2}回应着。", "在{P}，没有什么一成不变。",
             "一阵声响，一道影子，转折来了。", "不知不觉，{d2}靠近了。"],
    "peak": ["此刻，{S}{act}，别无他念。", "这一瞬间，{P}属于{S}。", "{S}、{d0}和光，在这里汇合。",
             "这是{S}最动人的时刻。", "此时此刻，{S}与{P}融为一体。", "整个画面都朝向{S}。"],
    "resolution": ["{T}，{P}重归宁静。", "{d0}渐渐淡去，{S}仍在。", "光走远了，{S}留了下来。", "明天，{d0}还会回到{P}。",
                   "{S}的{E}，就这样轻轻结束。", "最后，只有{d0}还在轻轻晃动。"],
}
# What a scene shows: the place and the subject, for the storyboard's shot descriptions and the painter.
EN_SCENES = {
    "opening": "{P_} {Tat}: {d0} and {d1}, with {S} small in the distance.",
    "detail": "{S_} seen close {atP} {Tat}: {k0} and {k1}.",
    "turn": "{atP_} {Tat}, the mood changes around {S}.",
    "peak": "{S_} at the heart of {P} {Tat}, {d0} all around.",
    "resolution": "{P_} {Tat} once more, {S} in the last light.",
}
ZH_SCENES = {
    "opening": "{Tat}的{P}：{d0}与{d1}，远处是{S}。",
    "detail": "{Tat}的{P}，近看{S}：{k0}和{k1}。",
    "turn": "{Tat}的{P}，{S}身边起了变化。",
    "peak": "{Tat}的{P}中央，{S}，四周是{d0}。",
    "resolution": "{Tat}的{P}，{S}在最后的光里。",
}
# The pace narration is written for: about 2.5 English words, or 4 Chinese characters, a second.
WORDS_PER_S = {"en": 2.5, "zh": 4.0}
ZH_PUNCTUATION = "，。！？、：；“”‘’（）《》"
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def line_size(line: str, language: str) -> int:
    """Words (English) or characters without punctuation (Chinese)."""
    if language == "zh":
        return len([ch for ch in line if not ch.isspace() and ch not in ZH_PUNCTUATION])
    return len(line.split())


def line_budget(duration_s: float, language: str) -> int:
    return max(2 if language == "en" else 3, int(WORDS_PER_S[language] * float(duration_s)))


def line_fit(line: str, budget: int, language: str) -> str:
    """The line cut to `budget` words or characters, at a clause where one fits, so it still reads."""
    if line_size(line, language) <= budget:
        return line
    if language == "zh":
        clauses = re.split(r"(?<=[，；：、])", line.rstrip("。！？"))
        kept = ""
        for clause in clauses:
            if line_size(kept + clause, language) > budget:
                break
            kept += clause
        if not kept:
            kept = "".join(ch for ch in line if ch not in ZH_PUNCTUATION)[:budget]
        return kept.rstrip("，；：、") + "。"
    clauses = re.split(r"(?<=[,;:])\s+", line.rstrip(".!?"))
    kept = []
    for clause in clauses:
        if len(" ".join(kept + [clause]).split()) > budget:
            break
        kept.append(clause)
    words = " ".join(kept).split() if kept else line.rstrip(".!?").split()[:budget]
    while len(words) > 1 and words[-1].lower().strip(",;:") in SMALL_WORDS | EN_PREPOSITIONS:
        words = words[:-1]
    return " ".join(words).rstrip(",;:") + "."


def sentences_of(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_END.split(text or "") if part.strip()]


def _fill_values(parsed: dict, mood: str) -> dict:
    """The placeholders' values for the parsed topic, in its language."""
    kind, setting, zh = parsed["subject_kind"], parsed["setting"], parsed["language"] == "zh"
    act_pair, subject_details, zh_act, zh_details = SUBJECT_WORDS[kind]
    place_name, preposition, place_details, zh_place, zh_place_details = SETTING_WORDS[setting]
    t_en, tat_en, t_zh, tat_zh = TIME_WORDS[parsed["time"]]
    if zh:
        subject = parsed["subject"] or zh_place
        place = parsed["place"] if parsed["place"] and vocabulary_pick(parsed["place"], SETTINGS) else zh_place
        return {"S": subject, "Ss": subject, "P": place, "T": t_zh, "Tat": tat_zh, "act": parsed["action"] or zh_act,
                "E": parsed["event"], "mood": mood, **{f"d{i}": d for i, d in enumerate(zh_place_details)},
                **{f"k{i}": k for i, k in enumerate(zh_details)}}
    core = parsed["subject"] or place_name.removeprefix("the ")
    head = core.split()[-1]
    plural = _en_plural(head)
    subject = core if core.lower().startswith("the ") else f"the {core}"
    short = f"the {head}" if len(core.split()) > 1 else subject
    action = parsed["action"]
    if action and action.split()[0].lower().endswith("ing"):
        action = f"{'are' if plural else 'is'} {action}"
    place = place_name
    if parsed["place"]:
        words = parsed["place"].split()
        if words[0].lower() in EN_PREPOSITIONS:
            preposition, words = words[0].lower(), words[1:]
        core_place = re.split(r"\b(?:" + "|".join(EN_PREPOSITIONS) + r")\b", _en_core(words))[0].strip(" ,")
        if core_place and vocabulary_pick(core_place, SETTINGS):
            place = f"the {core_place}"
    values = {"S": subject, "Ss": short, "P": place, "atP": f"{preposition} {place}", "T": t_en, "Tat": tat_en,
              "be": "are" if plural else "is", "its": "their" if plural else "its",
              "act": action or act_pair[1 if plural else 0], "E": parsed["event"], "poss": f"{subject}'s",
              "mood": mood, **{f"d{i}": d for i, d in enumerate(place_details)},
              **{f"k{i}": k for i, k in enumerate(subject_details)}}
    values.update({f"{key}_": capitalized(str(value)) for key, value in list(values.items())})
    return values


def _conjugated(verb: str, plural: bool) -> str:
    if plural:
        return verb
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _render(template: str, values: dict) -> str:
    """Fill a sentence: {key} is a value, {key~verb} the value followed by the verb agreeing with it; blanks
    left by an empty value are closed up."""
    def agree(match) -> str:
        phrase = values[match.group(1)]
        head = phrase.split()[-1] if phrase.split() else ""
        return f"{phrase} {_conjugated(match.group(2), _en_plural(head))}"

    text = re.sub(r"\{(\w+)~(\w+)\}", agree, re.sub(r"^\[\w+\]", "", template)).format(**values)
    return re.sub(r"\s+([,:;.])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()


def _usable(template: str, parsed: dict) -> bool:
    """Whether a sentence suits the topic: one naming the event needs an event, one under the sky a place
    outdoors, one in silence a place indoors."""
    if ("{E}" in template or "{poss" in template) and not parsed["event"]:
        return False
    if template.startswith("[out]") and parsed["setting"] not in OUTDOOR:
        return False
    if template.startswith("[in]") and parsed["setting"] in OUTDOOR:
        return False
    return True


def lines_write(parsed: dict, beats: list[str], counts: list[int], budget: int, mood: str,
                rng: random.Random) -> list[list[str]]:
    """For each beat, `count` different lines, each as close to `budget` words (or characters) as fits."""
    values = _fill_values(parsed, mood)
    table = ZH_LINES if parsed["language"] == "zh" else EN_LINES
    language = parsed["language"]

    def pool_of(beat: str) -> list[str]:
        return list(dict.fromkeys(capitalized(_render(t, values)) for t in table[beat] if _usable(t, parsed)))

    used: set[str] = set()
    out = []
    for beat, count in zip(beats, counts):
        pool = pool_of(beat)
        rng.shuffle(pool)
        chosen = []
        for _ in range(count):
            # Unused lines of this beat, else of any beat (a long film), else this beat's again.
            fresh = ([line for line in pool if line not in used]
                     or [line for other in table for line in pool_of(other) if line not in used] or pool)
            fitting = [line for line in fresh if line_size(line, language) <= budget]
            if fitting:
                best = max(line_size(line, language) for line in fitting)
                line = next(line for line in fitting if line_size(line, language) >= 0.7 * best)
            else:
                line = line_fit(min(fresh, key=lambda candidate: line_size(candidate, language)), budget, language)
            used.add(line)
            chosen.append(line)
        out.append(chosen)
    return out


def scene_describe(parsed: dict, beat: str, mood: str) -> str:
    values = _fill_values(parsed, mood)
    table = ZH_SCENES if parsed["language"] == "zh" else EN_SCENES
    return capitalized(_render(table[beat], values))


# --- Text: style, script, storyboard ---------------------------------------------------------------

# What each story beat sounds and looks like (English, Chinese).
BEATS = {
    "opening": {"audio": ("music fades in softly under the first words", "音乐在第一句话下轻轻淡入"),
                "lighting": ("soft early light", "柔和的初光")},
    "detail": {"audio": ("music builds with a light rhythm", "音乐随轻快的节奏渐强"),
               "lighting": ("clear, revealing light", "清晰通透的光")},
    "turn": {"audio": ("music shifts, a held note marks the change", "音乐转调，一个长音标出转折"),
             "lighting": ("contrasting light with deeper shadows", "明暗对比强烈，阴影更深")},
    "peak": {"audio": ("music swells to its fullest", "音乐推向最高潮"),
             "lighting": ("the brightest, most saturated light of the piece", "全片最明亮、最饱和的光")},
    "resolution": {"audio": ("music resolves and fades out", "音乐收束并淡出"),
                   "lighting": ("warm evening glow", "温暖的余晖")},
}
BEAT_ORDER = {
    1: ["opening"],
    2: ["opening", "resolution"],
    3: ["opening", "turn", "resolution"],
    4: ["opening", "detail", "turn", "resolution"],
    5: ["opening", "detail", "turn", "peak", "resolution"],
}
ZH_STYLE_WORDS = {
    "cinematic": {"电影", "史诗", "最后", "传奇"}, "documentary": {"纪录", "历史", "真实", "记录"},
    "animated": {"卡通", "动画", "可爱", "童话"}, "minimalist": {"极简", "简约", "简洁"},
    "vintage": {"怀旧", "复古", "老式", "回忆", "年代"}, "futuristic": {"未来", "科技", "赛博", "机器人"},
    "nature": {"自然", "森林", "山", "湖", "河", "海", "野生", "花", "树"}, "urban": {"城市", "街", "都市", "夜景"},
    "commercial": {"产品", "品牌", "广告", "咖啡", "瓶", "手机", "发布"}, "artistic": {"艺术", "绘画", "诗意"},
    "scifi": {"太空", "宇宙", "飞船", "星球", "外星", "银河"}, "fantasy": {"龙", "魔法", "城堡", "精灵", "巫师"},
}
ZH_STYLE_NAMES = {"cinematic": "电影感", "documentary": "纪录片", "animated": "动画", "minimalist": "极简",
                  "vintage": "复古", "futuristic": "未来感", "nature": "自然", "urban": "都市", "commercial": "商业",
                  "artistic": "艺术", "scifi": "科幻", "fantasy": "奇幻"}
STYLE_LIGHTING = {
    "cinematic": "warm golden backlight, deep contrast, soft haze",
    "documentary": "soft natural daylight, even exposure",
    "animated": "bright flat light with cheerful highlights",
    "minimalist": "soft diffuse light, gentle gradients, no harsh shadows",
    "vintage": "warm faded sunlight with soft bloom and vignette",
    "futuristic": "cool neon rim light over dark gradients",
    "nature": "golden-hour sunlight filtering through the scene",
    "urban": "mixed sodium and neon street light with reflections",
    "commercial": "bright high-key studio light, crisp highlights",
    "artistic": "expressive coloured light with painterly contrast",
    "scifi": "cool starlight cut by a warm engine glow",
    "fantasy": "magical glowing light through drifting mist",
}
SHOT_LABELS = {
    "extreme_wide": "Extreme wide shot", "wide": "Wide shot", "full": "Full shot", "medium_wide": "Medium wide shot",
    "medium": "Medium shot", "medium_close": "Medium close-up", "close": "Close-up",
    "extreme_close": "Extreme close-up",
}
SHOT_FOCUS = {
    "extreme_wide": "the vast setting", "wide": "the whole scene", "full": "the subject seen whole",
    "medium_wide": "the subject in its surroundings", "medium": "the heart of the action",
    "medium_close": "the subject's character", "close": "a telling detail", "extreme_close": "the finest detail",
}
COMPOSITION = {
    "extreme_wide": "vast establishing frame, subject tiny on the lower third, horizon on the upper third",
    "wide": "subject on a third line with the whole setting visible",
    "full": "subject seen whole, with room around it",
    "medium_wide": "subject from the knees up, background still readable",
    "medium": "subject from the waist up on the {side} third",
    "medium_close": "chest-up framing on the {side} third, shallow depth of field",
    "close": "the face or key detail fills the frame, background soft",
    "extreme_close": "a single detail fills the frame",
}
OPENING_MOVES = ["zoom_in", "pan_right", "tilt_down", "dolly"]
CLOSING_MOVES = ["zoom_out", "static", "pan_left", "tilt_up"]
ZH_STYLE_LIGHTING = {
    "cinematic": "温暖的金色逆光，强烈对比，柔和薄雾", "documentary": "柔和的自然日光，曝光均匀",
    "animated": "明亮平整的光，欢快的高光", "minimalist": "柔和漫射光，渐变细腻，没有硬阴影",
    "vintage": "温暖褪色的阳光，柔光与暗角", "futuristic": "冷色霓虹轮廓光，深色渐变",
    "nature": "金色时刻的阳光洒进画面", "urban": "钠灯与霓虹混合的街光和倒影",
    "commercial": "明亮的高调棚拍光，高光清脆", "artistic": "富有表现力的彩色光，绘画般的对比",
    "scifi": "冷冽星光中一道温暖的引擎光", "fantasy": "穿过薄雾的魔幻光芒",
}
ZH_SHOT_LABELS = {
    "extreme_wide": "大远景", "wide": "远景", "full": "全景", "medium_wide": "中远景", "medium": "中景",
    "medium_close": "中近景", "close": "近景", "extreme_close": "特写",
}
ZH_SHOT_FOCUS = {
    "extreme_wide": "辽阔的环境", "wide": "整个场景", "full": "主体的全貌", "medium_wide": "主体与周围",
    "medium": "动作的中心", "medium_close": "主体的神情", "close": "一个有分量的细节", "extreme_close": "最细微之处",
}
ZH_COMPOSITION = {
    "extreme_wide": "辽阔的建立镜头，主体很小，位于下三分之一，地平线在上三分之一",
    "wide": "主体在三分线上，整个环境可见", "full": "主体完整入画，四周留白",
    "medium_wide": "主体膝盖以上，背景仍可辨认", "medium": "主体腰部以上，位于{side}三分之一",
    "medium_close": "胸部以上，位于{side}三分之一，浅景深", "close": "面部或关键细节占满画面，背景虚化",
    "extreme_close": "一个细节占满画面",
}
ZH_SIDES = {"left": "左", "right": "右"}


def _equal_split(total: float, parts: int, weights: list[float] | None = None) -> list[float]:
    """`parts` durations (2 decimals) proportional to weights, summing exactly to `total` (the last absorbs
    the rounding)."""
    weights = weights or [1.0] * parts
    scale = total / sum(weights)
    values = [round(w * scale, 2) for w in weights[:-1]]
    values.append(round(total - sum(values), 2))
    return values


BREAK_BEFORE = {"and", "but", "or", "so", "then", "that", "than", "which", "where", "when", "while", "with",
                "of", "in", "on", "at", "to", "for", "from", "into", "across", "through", "every", "long", "after"}


def _split_words(text: str, parts: int) -> list[str]:
    """Split text into `parts` consecutive word groups of near-equal size (empty strings when short), cutting
    preferably after punctuation, else before a conjunction or preposition, so each subtitle reads well."""
    words = text.split()
    cuts, start = [], 0
    for index in range(1, parts):
        ideal = len(words) * index / parts
        candidates = range(start + 1, max(start + 1, len(words) - (parts - index)) + 1)

        def cost(cut: int) -> float:
            if cut >= len(words):
                return abs(cut - ideal) + 3
            if words[cut - 1][-1:] in ",.;:!?":
                return abs(cut - ideal)
            dangling = 2.0 if words[cut - 1].lower() in {"a", "an", "the"} else 0.0  # never end on an article
            return abs(cut - ideal) + dangling + (1.0 if words[cut].lower() in BREAK_BEFORE else 2.5)

        cut = min(candidates, key=lambda c: (cost(c), c)) if len(words) > start else start
        cuts.append(cut)
        start = cut
    bounds = [0] + cuts + [len(words)]
    return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:])]


def _split_text(text: str, parts: int, language: str) -> list[str]:
    """Like _split_words; Chinese (no spaces) is cut between characters, preferably after punctuation."""
    if language != "zh":
        return _split_words(text, parts)
    spaced = " ".join(re.findall(r"[^，。！？、；：]+[，。！？、；：]*", text)) if parts > 1 else text
    pieces = _split_words(spaced, parts)
    if sum(1 for piece in pieces if piece) >= min(parts, len(text)) or parts == 1:
        return [piece.replace(" ", "") for piece in pieces]
    size = math.ceil(len(text) / parts)
    return [text[i * size:(i + 1) * size] for i in range(parts)]


class OfflineText:
    """A deterministic planner: no model, just keyword scoring, a topic read by rules and story beats."""

    name = "offline"
    queue = "cpu"

    def style(self, *, topic: str, catalogue: dict, ctx: StageContext) -> Result:
        catalogue = catalogue or STYLE_CATALOGUE
        text = f"{topic} {prompt_of(ctx, 'style')}".lower()
        words = set(words_of(text))
        stems = {word_stem(word) for word in words}
        scores: dict[str, float] = {}
        for name, entry in catalogue.items():
            score = 0.0
            for weight, tag in [(3.0, name)] + [(2.0, tag) for tag in entry.get("tags", [])]:
                tag = tag.lower()
                if " " in tag:
                    score += weight if tag in text else 0
                elif tag in words or word_stem(tag) in stems:
                    score += weight
            score += sum(2.0 for word in ZH_STYLE_WORDS.get(name, ()) if word in text)
            scores[name] = score
        # A place the topic names, or a product it shows, leans the choice (a lighthouse is cinematic, a
        # bottle a commercial) a little more than one keyword does.
        parsed = topic_parse(topic, language_resolve((ctx.options or {}).get("language"), topic))
        named = vocabulary_pick(topic, SETTINGS)
        for lean in (SETTING_STYLE.get(named), SUBJECT_STYLE.get(parsed["subject_kind"])):
            if lean in scores:
                scores[lean] += 2.5
        names = list(catalogue)
        best = max(names, key=lambda name: (scores[name], -names.index(name)))
        how = "keywords"
        if scores[best] <= 0:
            best = sorted(names)[digest_int("style", topic) % len(names)]
            how = "hash"
        chosen = schemas.validate(dict(catalogue[best], name=best), schemas.STYLE, "style")
        return Result(value=chosen, usage={"model": "offline", "method": how, "score": scores.get(best, 0)})

    def script(self, *, topic: str, style: dict, duration_s: float, shots: int, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        language = language_resolve((ctx.options or {}).get("language"), topic)
        zh = language == "zh"
        topic_text = text_clip(topic, 120).rstrip(".!?。！？ ") or ("我们的主题" if zh else "our subject")
        if not zh:
            topic_text = mid_sentence(topic_text)
        rng = random.Random(digest_int("script", topic, style.get("name"), duration_s, shots, ctx.organization_id,
                                       language))
        mood = (style.get("mood") or "memorable").split(",")[0].strip() or "memorable"
        direction = prompt_of(ctx, "script")
        n_scenes = min(5, shots, max(1, math.ceil(shots / 2)))
        shots_per_scene = [shots // n_scenes + (1 if i < shots % n_scenes else 0) for i in range(n_scenes)]
        durations = _equal_split(duration_s, n_scenes, [float(n) for n in shots_per_scene])
        parsed = topic_parse(topic, language, style.get("name", ""))
        beats = BEAT_ORDER[n_scenes]
        lines = lines_write(parsed, beats, shots_per_scene, line_budget(duration_s / shots, language), mood, rng)
        style_name = style.get("name", "cinematic")
        scenes = []
        for beat_name, scene_duration, scene_lines in zip(beats, durations, lines):
            beat = BEATS[beat_name]
            if zh:
                visual = (f"{ZH_STYLE_NAMES.get(style_name, style_name)}风格：{style.get('visual_description', '')} "
                          f"光线：{beat['lighting'][1]}。" + (f" 导演要求：{direction}" if direction else ""))
                audio = f"旁白语气{mood}；{beat['audio'][1]}。"
            else:
                visual = (f"{style_name} look: {style.get('visual_description', '')} "
                          f"Light: {beat['lighting'][0]}." + (f" Direction: {direction}" if direction else ""))
                audio = f"Narration in a {mood} tone; {beat['audio'][0]}."
            scenes.append({
                "description": text_clip(scene_describe(parsed, beat_name, mood), 2000),
                "narration": text_clip(("" if zh else " ").join(scene_lines), 2000),
                "dialogue": text_clip(scene_lines[0], 80),
                "duration_s": scene_duration,
                "visual_notes": text_clip(visual, 1000),
                "audio_notes": text_clip(audio, 1000),
            })
        if zh:
            title = topic_text
            synopsis = (f"一部{duration_s:g}秒的{ZH_STYLE_NAMES.get(style_name, style_name)}短片，讲述{topic_text}，"
                        f"共{n_scenes}场、{shots}个镜头；基调：{style.get('mood', mood)}。")
            if direction:
                synopsis += f" 导演要求：{direction}"
        else:
            title = " ".join(word if word in SMALL_WORDS and i else capitalized(word)
                             for i, word in enumerate(topic_text.split()))
            synopsis = (f"A {duration_s:g}-second {style.get('name', '')} short about {topic_text}, told in "
                        f"{n_scenes} scene{'s' if n_scenes > 1 else ''} and {shots} shot{'s' if shots > 1 else ''}; "
                        f"the mood is {style.get('mood', mood)}.")
            if direction:
                synopsis += f" Direction: {direction}"
        value = {"title": text_clip(title, 200), "synopsis": text_clip(synopsis, 2000), "scenes": scenes,
                 "language": language}
        return Result(value=schemas.validate(value, schemas.SCRIPT, "script"),
                      usage={"model": "offline", "language": language, "setting": parsed["setting"],
                             "subject": parsed["subject_kind"]})

    def storyboard(self, *, script: dict, style: dict, shots: int, duration_s: float, ctx: StageContext) -> Result:
        duration_s, shots = _check_plan(duration_s, shots)
        scenes = script.get("scenes") or [{"description": script.get("synopsis") or "A scene.", "narration": "",
                                           "duration_s": duration_s}]
        language = script.get("language")
        if language not in LANGUAGES:
            language = language_resolve((ctx.options or {}).get("language"), " ".join(
                f"{scene.get('description', '')} {scene.get('narration', '')}" for scene in scenes))
        zh = language == "zh"
        rng = random.Random(digest_int("storyboard", script, style.get("name"), shots, duration_s, ctx.organization_id))
        direction = prompt_of(ctx, "storyboard")

        # The script's sentences, one per shot when it wrote as many as there are shots (the offline script
        # does): each shot then speaks its own line, and the shots of a scene are its sentences'.
        sentences = [sentences_of(scene.get("narration") or scene.get("dialogue") or "") for scene in scenes]
        one_each = sum(len(group) for group in sentences) == shots
        random_weights = [rng.uniform(0.85, 1.15) * (1.15 if i in (0, shots - 1) and shots > 2 else 1.0)
                          for i in range(shots)]
        lines: dict[int, str] = {}
        if one_each:
            owner = [index for index, group in enumerate(sentences) for _ in group]
            flat = [line for group in sentences for line in group]
            lines = dict(enumerate(flat))
            # A longer line gets a longer shot, so every line is read at about the same pace.
            sizes = [max(1, line_size(line, language)) for line in flat]
            mean = sum(sizes) / len(sizes)
            weights = [0.5 * w + 0.5 * size / mean for w, size in zip(random_weights, sizes)]
            durations = _equal_split(duration_s, shots, weights)
        else:
            durations = _equal_split(duration_s, shots, random_weights)
        if min(durations) < 0.5:
            durations = _equal_split(duration_s, shots)

        if not one_each:
            # Each shot belongs to the scene playing at its midpoint on the script's (rescaled) timeline.
            scene_total = sum(float(scene.get("duration_s") or 0) for scene in scenes) or 1.0
            bounds, acc = [], 0.0
            for scene in scenes:
                acc += float(scene.get("duration_s") or 0) / scene_total * duration_s
                bounds.append(acc)
            owner, start = [], 0.0
            for d in durations:
                middle = start + d / 2
                owner.append(next((i for i, bound in enumerate(bounds) if middle < bound), len(scenes) - 1))
                start += d
            members: dict[int, list[int]] = {}
            for shot_index, scene_index in enumerate(owner):
                members.setdefault(scene_index, []).append(shot_index)
            for scene_index, shot_indexes in members.items():
                scene = scenes[scene_index]
                text = scene.get("narration") or scene.get("dialogue") or ""
                for shot_index, line in zip(shot_indexes, _split_text(text, len(shot_indexes), language)):
                    lines[shot_index] = line

        shot_types = _plan_shot_types(owner, rng)
        movements = _plan_movements(shots, rng)
        style_name = style.get("name")
        lighting_base = (ZH_STYLE_LIGHTING.get(style_name, "柔和的自然光") if zh
                         else STYLE_LIGHTING.get(style_name, "soft natural light"))
        out = []
        for i in range(shots):
            scene = scenes[owner[i]]
            shot_type = shot_types[i]
            scene_text = text_clip(scene.get("description") or "", 600)
            side = rng.choice(["left", "right"])
            if zh:
                description = f"{ZH_SHOT_LABELS[shot_type]}，{ZH_SHOT_FOCUS[shot_type]}：{scene_text}"
                composition = ZH_COMPOSITION[shot_type].format(side=ZH_SIDES[side])
            else:
                description = f"{SHOT_LABELS[shot_type]}, {SHOT_FOCUS[shot_type]}: {scene_text}"
                composition = COMPOSITION[shot_type].format(side=side)
            if direction:
                description += f" Direction: {direction}"
            beat_light = _scene_lighting(scene)
            joiner = "；" if zh else "; "
            line = line_fit(lines.get(i, ""), line_budget(durations[i], language), language) if lines.get(i) else ""
            out.append({
                "number": i + 1,
                "description": text_clip(description, 2000),
                "dialogue": text_clip(line, 120),
                "camera_movement": movements[i],
                "shot_type": shot_type,
                "duration_s": durations[i],
                "composition": text_clip(composition + (f"{joiner}{direction}" if direction else ""), 1000),
                "lighting": text_clip(f"{lighting_base}{joiner}{beat_light}" if beat_light else lighting_base, 1000),
            })
        value = schemas.validate({"language": language, "shots": out}, schemas.STORYBOARD, "storyboard")
        return Result(value=value, usage={"model": "offline", "language": language})


def _check_plan(duration_s, shots) -> tuple[float, int]:
    try:
        duration_s, shots = float(duration_s), int(shots)
    except (TypeError, ValueError):
        raise ProviderRefused("duration_s and shots must be numbers") from None
    if not 1 <= shots <= 50:
        raise ProviderRefused(f"shots must be between 1 and 50, not {shots}")
    if duration_s < 0.5 * shots or duration_s > 600:
        raise ProviderRefused(f"{duration_s:g} s cannot hold {shots} shots of at least 0.5 s (and at most 600 s)")
    return duration_s, shots


def _scene_lighting(scene: dict) -> str:
    notes = scene.get("visual_notes") or ""
    match = re.search(r"Light: ([^.]+)\.", notes) or re.search(r"光线：([^。]+)。", notes)
    return match.group(1) if match else ""


def _plan_shot_types(owner: list[int], rng: random.Random) -> list[str]:
    """Within a scene, start wide and move closer shot by shot; the film opens extreme wide and ends wide."""
    types, position, previous_scene = [], 0, None
    for i, scene_index in enumerate(owner):
        if scene_index != previous_scene:
            position = 0 if i == 0 else rng.choice([1, 2, 3])
        elif position >= 7:
            position = rng.choice([1, 2, 3])
        else:
            position = min(7, position + rng.choice([2, 3, 3, 4]))
        previous_scene = scene_index
        types.append(schemas.SHOT_TYPES[position])
    if len(types) > 2:
        types[-1] = "wide"
    return types


def _plan_movements(shots: int, rng: random.Random) -> list[str]:
    """A varied, seeded sequence: an opening move, a shuffled cycle of all movements, a closing move."""
    order = list(schemas.CAMERA_MOVEMENTS)
    rng.shuffle(order)
    moves = [rng.choice(OPENING_MOVES)]
    cycle = [move for move in order if move != moves[0]]
    while len(moves) < shots:
        moves.append(cycle[(len(moves) - 1) % len(cycle)])
    if shots > 2:
        closing = [move for move in CLOSING_MOVES if move != moves[-2]]
        moves[-1] = rng.choice(closing)
    return moves[:shots]
