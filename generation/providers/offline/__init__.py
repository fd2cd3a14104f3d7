"""The default provider: plans and renders a watchable animatic with nothing but Python, Pillow and ffmpeg.

Everything is deterministic: the same input (topic, shot, style, and the shot's optional integer "seed",
which the pipeline bumps to regenerate) gives the same output bytes within one organization. The
organization is part of every seed, so two studios that ask for the same topic with the same options get
animatics of their own, not byte-identical files that the rights check would flag as copies of each other
(the pipeline reuses artifacts only within an organization, so its content addressing is unaffected).
Nothing is downloaded, nothing is billed: every Result has cost 0.

The package: common.py (seeds, words), and one module per kind:

- OfflineText (text.py) plans: style by keyword scoring, a beat-structured script, and a storyboard whose shot
  durations sum exactly to the requested duration.
- OfflineImage (image.py) paints a shot's first frame (a PNG of exactly ctx.size) from the description's keywords,
  the style palette and the shot type (the subject grows from extreme_wide to extreme_close).
- OfflineVideo (video.py) animates that PNG: the camera movement moves a crop window (zoom 1 to MAX_ZOOM) over the
  frame and scales it back to ctx.size, so the PNG needs no margin; particles, a light sweep or passing
  foreground add life. Raw RGB frames are piped to ffmpeg's libx264.
- OfflineVoice (voice.py) speaks through espeak-ng/espeak when installed, and returns Result(None) otherwise.
"""
from generation.providers.offline.image import OfflineImage, palette_colors  # noqa: F401
from generation.providers.offline.text import OfflineText  # noqa: F401
from generation.providers.offline.video import OfflineVideo  # noqa: F401
from generation.providers.offline.voice import OfflineVoice  # noqa: F401
