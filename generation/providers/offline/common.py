"""What the offline providers share: deterministic seeds and the words of a prompt."""
from __future__ import annotations

import hashlib
import json
import re

from generation.providers.base import StageContext


def digest_int(*parts) -> int:
    """A stable 64-bit seed from any JSON-serialisable parts (Python's hash() is salted per process)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def word_stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def text_clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def mid_sentence(topic: str) -> str:
    first, _, rest = topic.partition(" ")
    return f"{first.lower()} {rest}".strip() if first.lower() in LEADING_LOWER else topic


def prompt_of(ctx: StageContext, key: str) -> str:
    value = (ctx.prompts or {}).get(key) or ""
    return text_clip(str(value), 400)


def shot_seed(shot: dict, style: dict, organization_id=None) -> int:
    """What makes a frame (and its clip's particles) unique: the shot's content, number, style and seed,
    the job's topic when the pipeline passes it, and the organization it is made for."""
    parts = ["shot", shot.get("number"), shot.get("description"), shot.get("shot_type"), shot.get("seed", 0),
             (style or {}).get("name"), (style or {}).get("palette"), organization_id]
    if shot.get("topic"):
        parts.append(shot["topic"])
    return digest_int(*parts)
SMALL_WORDS = {"a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "with", "by", "from"}
# Leading words lowercased when the topic is used mid-sentence ("This is a fox ...").
LEADING_LOWER = SMALL_WORDS | {"how", "why", "what", "when", "where", "who", "our", "my", "your", "their", "this",
                               "these", "those", "some", "every", "one"}


# --- language ------------------------------------------------------------------------------------

LANGUAGES = ("en", "zh")
CJK_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def language_detect(text: str) -> str:
    """"zh" when CJK ideographs carry the text (at least as many as its Latin words), else "en"."""
    ideographs = len(CJK_IDEOGRAPH.findall(text or ""))
    return "zh" if ideographs and ideographs >= len(re.findall(r"[A-Za-z]+", text or "")) else "en"


def language_resolve(option, text: str) -> str:
    """The job's "language" option ("auto", "en", "zh"); "auto" (or anything else) detects it from the text."""
    return option if option in LANGUAGES else language_detect(text)


# --- the scene vocabulary --------------------------------------------------------------------------
# What the planner parses out of a topic and the painter draws; one table so they agree. English words are
# matched after word_stem, Chinese ones as substrings (no segmentation), a longer Chinese word counting more
# (so 机器人 is a robot before 人 is a person). Ties go to the earlier, more specific entry.

SETTINGS = {
    "lighthouse": ({"lighthouse", "beacon", "lightkeeper"}, {"灯塔"}),
    "underwater": ({"underwater", "seabed", "seafloor", "reef", "coral", "diver", "diving", "submarine", "abyss"},
                   {"水下", "海底", "深海", "珊瑚", "潜水"}),
    "space": ({"space", "galaxy", "planet", "cosmos", "universe", "nebula", "orbit", "astronaut", "starship",
               "spaceship", "star", "mars", "lunar"}, {"太空", "宇宙", "星空", "银河", "星球", "月球", "火星"}),
    "stage": ({"stage", "theatre", "theater", "concert", "performance", "spotlight", "opera", "ballet"},
              {"舞台", "剧场", "剧院", "演唱会", "音乐会", "演出"}),
    "office": ({"office", "desk", "workplace", "meeting", "startup", "coworker", "boardroom", "cubicle"},
               {"办公室", "办公", "会议", "工位", "公司"}),
    "room": ({"room", "bedroom", "kitchen", "home", "interior", "apartment", "attic", "library", "indoors",
              "livingroom"}, {"房间", "卧室", "厨房", "客厅", "家里", "屋里", "室内", "书房"}),
    "tabletop": ({"table", "tabletop", "countertop", "studio", "packshot", "counter", "product", "unboxing"},
                 {"桌", "台面", "桌面", "产品", "柜台"}),
    "street": ({"street", "road", "traffic", "avenue", "alley", "sidewalk", "crosswalk", "city", "rush", "market",
                "neighbourhood", "neighborhood"}, {"街", "马路", "道路", "路口", "巷", "集市"}),
    "skyline": ({"skyline", "downtown", "skyscraper", "metropolis", "city", "urban", "rooftop"},
                {"城市", "天际线", "高楼", "摩天", "都市"}),
    "desert": ({"desert", "dune", "sahara", "cactus", "oasis", "camel"}, {"沙漠", "沙丘", "仙人掌", "戈壁", "骆驼"}),
    "snow": ({"snow", "snowy", "winter", "ice", "icy", "glacier", "arctic", "frozen", "blizzard", "polar"},
             {"雪", "冰", "冬", "极地"}),
    "lake": ({"lake", "river", "pond", "stream", "waterfall", "creek", "riverbank", "lakeside"},
             {"湖", "河", "江", "溪", "池塘", "瀑布"}),
    "mountains": ({"mountain", "peak", "alp", "summit", "canyon", "valley", "volcano", "cliff", "ridge"},
                  {"山", "峰", "峡谷", "火山", "悬崖"}),
    "forest": ({"forest", "wood", "woods", "jungle", "rainforest", "tree", "pine", "grove", "woodland"},
               {"森林", "树林", "丛林", "林间", "雨林"}),
    "coast": ({"coast", "sea", "ocean", "beach", "shore", "wave", "harbour", "harbor", "island", "bay", "seaside",
               "cove", "port"}, {"海", "海岸", "海边", "沙滩", "海浪", "港口", "海岛"}),
    "field": ({"field", "meadow", "farm", "prairie", "grassland", "hill", "countryside", "pasture", "wheat",
               "village"}, {"田野", "草原", "农场", "麦田", "草地", "乡村", "田"}),
}
SUBJECTS = {
    "robot": ({"robot", "android", "cyborg", "droid"}, {"机器人", "机械人"}),
    "group": ({"people", "crowd", "team", "family", "friends", "group", "band", "couple", "children", "kids",
               "grandparents", "villagers", "workers", "students", "dancers"},
              {"人们", "一群人", "团队", "家人", "朋友们", "大家", "孩子们", "一家人", "人群"}),
    "animals": ({"animals", "herd", "flock", "pack", "wildlife", "birds", "foxes", "wolves", "horses", "deer",
                 "sheep", "cattle", "cats", "dogs"}, {"动物们", "兽群", "羊群", "鸟群", "狼群", "马群", "一群"}),
    "animal": ({"animal", "fox", "dog", "cat", "wolf", "bear", "horse", "dragon", "bird", "rabbit", "lion", "tiger",
                "owl", "whale", "fish", "elephant", "panda", "puppy", "kitten"},
               {"动物", "狐狸", "狗", "猫", "狼", "熊", "马", "龙", "鸟", "兔", "狮", "虎", "鲸", "鱼", "熊猫"}),
    "bottle": ({"bottle", "flask", "jar", "perfume", "canteen", "thermos", "vial"}, {"瓶", "水壶", "保温杯", "香水"}),
    "drink": ({"coffee", "cup", "mug", "tea", "espresso", "latte", "drink", "cocoa"},
              {"咖啡", "杯", "茶", "饮料", "奶茶"}),
    "food": ({"food", "cake", "bread", "meal", "dish", "pizza", "fruit", "apple", "dinner", "breakfast", "cookie",
              "noodle", "soup", "recipe", "dumpling", "burger"},
             {"食物", "蛋糕", "面包", "饭", "菜", "水果", "苹果", "面条", "饺子", "汤", "美食", "早餐"}),
    "device": ({"phone", "smartphone", "laptop", "computer", "tablet", "camera", "gadget", "app", "headphone",
                "smartwatch", "device", "screen"}, {"手机", "电脑", "笔记本", "相机", "平板", "耳机", "手表", "设备"}),
    "vehicle": ({"car", "truck", "bus", "taxi", "van", "bicycle", "bike", "motorcycle", "train", "tram", "vehicle"},
                {"汽车", "车", "卡车", "公交", "自行车", "火车", "摩托"}),
    "boat": ({"boat", "ship", "sailboat", "yacht", "canoe", "ferry", "sail", "kayak"}, {"船", "帆船", "游艇", "渡轮"}),
    "aircraft": ({"rocket", "spaceship", "starship", "spacecraft", "ufo", "plane", "airplane", "jet", "aircraft",
                  "balloon"}, {"火箭", "飞船", "飞机", "飞碟", "热气球"}),
    "building": ({"building", "castle", "cabin", "church", "temple", "barn", "cottage", "tower", "palace", "hut",
                  "school", "shop", "cafe"}, {"房子", "房屋", "城堡", "寺庙", "教堂", "大楼", "小屋", "学校", "商店"}),
    "plant": ({"plant", "flower", "rose", "seedling", "sprout", "bonsai", "cactus", "succulent", "blossom", "garden",
               "sunflower", "bamboo"}, {"植物", "花", "玫瑰", "幼苗", "盆栽", "竹", "向日葵", "花园"}),
    "lantern": ({"lantern", "lamp", "candle", "firefly", "torch"}, {"灯笼", "蜡烛", "萤火虫", "烛", "油灯", "台灯", "提灯"}),
    "person": ({"person", "man", "woman", "keeper", "girl", "boy", "child", "kid", "farmer", "sailor", "fisherman",
                "worker", "teacher", "doctor", "chef", "artist", "dancer", "singer", "musician", "traveller",
                "traveler", "hiker", "grandmother", "grandfather", "mother", "father", "student", "hero", "king",
                "queen", "knight", "wizard", "explorer", "scientist", "runner", "astronaut", "detective", "pilot",
                "poet", "baker", "writer", "nurse", "soldier", "monk", "climber", "surfer", "guard", "lady"},
               {"人", "看守", "男人", "女人", "女孩", "男孩", "孩子", "老人", "农民", "水手", "渔夫", "老师", "医生",
                "厨师", "画家", "舞者", "歌手", "旅人", "妈妈", "爸爸", "学生", "英雄", "国王", "骑士", "宇航员",
                "侦探", "诗人", "奶奶", "爷爷", "少年", "少女", "守"}),
}
TIMES = {
    "night": ({"night", "midnight", "moonlight", "dark", "evening", "starlight", "nocturnal", "tonight"},
              {"夜", "晚上", "午夜", "月光", "深夜"}),
    "dawn": ({"dawn", "sunrise", "morning", "daybreak"}, {"黎明", "清晨", "日出", "早晨"}),
    "dusk": ({"dusk", "sunset", "twilight", "golden"}, {"黄昏", "日落", "傍晚", "夕阳"}),
}


# A landmark outweighs the generic words that come with it: "a lighthouse by the sea, waves on the rocks" is the
# lighthouse (which the painter draws with its sea), not the coast.
SETTING_WEIGHTS = {"lighthouse": 3.0, "underwater": 2.0}


def vocabulary_hits(text: str, table: dict, weights: dict | None = None) -> dict[str, float]:
    """How strongly the text names each entry of a vocabulary table (English stems and Chinese substrings)."""
    stems = {word_stem(word) for word in words_of(text)} | set(words_of(text))
    hits = {}
    for kind, (english, chinese) in table.items():
        score = float(len(stems & ({word_stem(w) for w in english} | english)))
        score += sum(len(word) for word in chinese if word in (text or ""))
        if score:
            hits[kind] = score * (weights or {}).get(kind, 1.0)
    return hits


def vocabulary_pick(text: str, table: dict) -> str | None:
    """The entry the text names most strongly (ties: the earlier entry), or None."""
    hits = vocabulary_hits(text, table, SETTING_WEIGHTS if table is SETTINGS else None)
    if not hits:
        return None
    order = list(table)
    return max(hits, key=lambda kind: (hits[kind], -order.index(kind)))
