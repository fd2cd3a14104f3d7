"""The style catalogue: the twelve visual styles a job can take, each valid against schemas.STYLE.

The offline planner detects a topic's style by scoring its words against `tags`; the offline renderer
paints with `palette` (first colours: sky/background gradient, then ground, accents, subject). Palettes
keep their first two colours well above black, so a dark style still passes the review's black check.
"""
from __future__ import annotations

STYLE_CATALOGUE: dict[str, dict] = {
    "cinematic": {
        "name": "cinematic",
        "tags": ["cinematic", "film", "movie", "drama", "epic", "story", "hero", "journey", "trailer", "emotional"],
        "visual_description": "Widescreen film look: teal and orange grading, shallow depth of field, "
                              "strong silhouettes against warm backlight, slow deliberate camera moves.",
        "mood": "dramatic, emotional, grand",
        "palette": ["#2f5d6e", "#e8a25c", "#1d3340", "#f2c38b", "#8c3b2a"],
    },
    "documentary": {
        "name": "documentary",
        "tags": ["documentary", "history", "science", "facts", "explained", "interview", "report", "education",
                 "how", "why", "biography", "research"],
        "visual_description": "Natural, honest imagery with neutral grading, steady observational framing and "
                              "clear establishing shots that let the subject speak for itself.",
        "mood": "informative, calm, trustworthy",
        "palette": ["#7a8b99", "#d9d4c7", "#4a5a45", "#b5764a", "#2e3a44"],
    },
    "animated": {
        "name": "animated",
        "tags": ["animated", "cartoon", "kids", "children", "fun", "playful", "toy", "cute", "funny", "character"],
        "visual_description": "Bright flat colours, rounded friendly shapes, bold outlines and bouncy motion, "
                              "like a modern 2D animated short.",
        "mood": "cheerful, playful, energetic",
        "palette": ["#5ec8f2", "#fff3b0", "#7bd389", "#ff6b6b", "#ffd23f", "#845ec2"],
    },
    "minimalist": {
        "name": "minimalist",
        "tags": ["minimalist", "minimal", "simple", "clean", "calm", "zen", "meditation", "focus", "design",
                 "mindfulness"],
        "visual_description": "Generous negative space, a single subject, soft monochrome gradients and "
                              "precise geometric composition.",
        "mood": "quiet, serene, focused",
        "palette": ["#e9e6e1", "#c9c5bf", "#8d8a86", "#2b2b2b"],
    },
    "vintage": {
        "name": "vintage",
        "tags": ["vintage", "retro", "old", "nostalgia", "classic", "antique", "1950s", "1970s", "memories",
                 "grandparents", "past", "era"],
        "visual_description": "Warm faded film stock, sepia highlights, soft grain and vignetting, period props "
                              "and gentle handheld framing.",
        "mood": "nostalgic, warm, wistful",
        "palette": ["#c9a66b", "#efe0c0", "#7a5c3a", "#a3472e", "#4b3b2a"],
    },
    "futuristic": {
        "name": "futuristic",
        "tags": ["futuristic", "future", "technology", "tech", "ai", "digital", "innovation", "hologram",
                 "neon", "smart", "startup", "virtual"],
        "visual_description": "Sleek glass and chrome, glowing neon accents on dark gradients, holographic "
                              "interfaces and clean symmetrical lines.",
        "mood": "sleek, optimistic, high-tech",
        "palette": ["#3a3f8f", "#2bd9e6", "#1c1f4a", "#ff4fd8", "#c8f7ff"],
    },
    "nature": {
        "name": "nature",
        "tags": ["nature", "forest", "wildlife", "animals", "ocean", "mountain", "river", "trees", "garden",
                 "landscape", "birds", "outdoors"],
        "visual_description": "Lush natural landscapes in golden-hour light, rich greens and blues, wide "
                              "vistas and patient close observation of living things.",
        "mood": "peaceful, awe-inspiring, organic",
        "palette": ["#8fc1e3", "#f4e3b1", "#3f7d3a", "#2a5a2c", "#c97b3c"],
    },
    "urban": {
        "name": "urban",
        "tags": ["urban", "city", "street", "downtown", "skyline", "traffic", "night", "architecture",
                 "subway", "skateboard", "graffiti", "building"],
        "visual_description": "Dense city streets, concrete and glass, sodium and neon light, layered "
                              "foregrounds and energetic tracking shots.",
        "mood": "energetic, gritty, alive",
        "palette": ["#5a6378", "#f0a04b", "#2f3441", "#e04f5f", "#9fb3c8"],
    },
    "commercial": {
        "name": "commercial",
        "tags": ["commercial", "product", "brand", "advert", "marketing", "launch", "sale", "business",
                 "company", "shop", "coffee", "service"],
        "visual_description": "Polished studio lighting, clean bright backgrounds, hero product framing and "
                              "confident, smooth camera moves.",
        "mood": "upbeat, confident, persuasive",
        "palette": ["#f5f7fa", "#4f8cff", "#d8e2f0", "#ff7a45", "#1f2d3d"],
    },
    "artistic": {
        "name": "artistic",
        "tags": ["artistic", "art", "painting", "abstract", "poetry", "dream", "music", "dance", "color",
                 "surreal", "gallery", "expression"],
        "visual_description": "Painterly textures, expressive colour fields, bold unexpected compositions and "
                              "fluid transitions between images.",
        "mood": "expressive, dreamy, evocative",
        "palette": ["#e07a5f", "#f2cc8f", "#81b29a", "#3d405b", "#f4f1de"],
    },
    "scifi": {
        "name": "scifi",
        "tags": ["scifi", "space", "spaceship", "alien", "robot", "galaxy", "planet", "star", "rocket",
                 "astronaut", "starship", "cosmos"],
        "visual_description": "Deep space vistas, starfields and planets, sleek spacecraft, rim-lit figures "
                              "and cool blue light cut by warm engine glow.",
        "mood": "mysterious, vast, adventurous",
        "palette": ["#2b3a7a", "#6a4c9c", "#151a3d", "#7fd8ff", "#ff9f43"],
    },
    "fantasy": {
        "name": "fantasy",
        "tags": ["fantasy", "magic", "dragon", "castle", "wizard", "fairy", "kingdom", "legend", "myth",
                 "enchanted", "quest", "knight"],
        "visual_description": "Enchanted landscapes with glowing light, towering castles, misty valleys and "
                              "saturated jewel tones, like an illustrated storybook.",
        "mood": "magical, wondrous, epic",
        "palette": ["#5b4b8a", "#f6c6ea", "#2e5e4e", "#ffd56b", "#9a4fd0"],
    },
}

