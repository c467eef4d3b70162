"""Read the text on signboards and plaques in a photo: Japanese (across and down) and English.

Two OCR engines read a photo; both give, per text box, its readings with a confidence:

- `scene` (default, lookalike.ocr.scenetext): PP-OCR's scene-text detector and recogniser on
  onnxruntime - trained on photos of signs, so bronze, engraved, tilted or shadowed plaques;
- `tesseract` (lookalike.ocr.tesseract): classic detectors for plates and lines, then
  Tesseract (a document reader) on each cleaned, levelled region.

`read_signs` turns the readings into `TextLine`s the same way whichever engine read them:
normalised, lines with too few letters dropped, lines read with little confidence kept aside
as doubtful (a name can still be looked for in them), one line per place, reading order.

Text is normalised (`normalise_text`) so that a comparison ignores what OCR and typography
vary: NFKC (full-width -> ASCII, half-width kana -> full-width), case, Latin accents
(Inō -> ino), katakana -> hiragana, punctuation and spacing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import unicodedata
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lookalike.ocr.engine import DEFAULT_ENGINE, OCR_ENGINES, OcrEngine, boxes_overlap
from lookalike.ocr.engine import (
    OcrUnavailable as OcrUnavailable,  # callers catch ocr.OcrUnavailable
)

MAX_SIDE = 1600  # photos are read at most this long; larger ones are scaled down first
MIN_CHARS = 2  # Latin lines with fewer letters/digits are dropped (one kanji or kana is kept)
DOUBTFUL_CONFIDENCE = 0.3  # readings below an engine's min_confidence are kept down to this


@dataclasses.dataclass(frozen=True)
class TextLine:
    """One line of text read from a photo.

    `box` is (left, top, right, bottom) in the pixels of the image given to `read_text`;
    `confidence` is the engine's confidence in 0..1 (PP-OCR: mean character probability;
    Tesseract: mean word confidence).
    """

    text: str  # normalised (see `normalise_text`)
    raw: str  # as the engine read it
    box: tuple[int, int, int, int]
    confidence: float
    vertical: bool = False
    # Other readings of the same box (other layouts / text sizes), normalised, with their
    # confidence: each drops different characters, so a name is looked for in all of them.
    alternatives: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict:
        return {"text": self.text, "raw": self.raw, "box": list(self.box),
                "confidence": round(self.confidence, 3), "vertical": self.vertical,
                "alternatives": [{"text": text, "confidence": round(confidence, 3)}
                                 for text, confidence in self.alternatives]}


# -- engines ----------------------------------------------------------------------------------------
@functools.cache
def get_engine(name: str = DEFAULT_ENGINE) -> OcrEngine:
    """The engine called `name` (one per process: its models stay loaded)."""
    if name == "scene":
        from lookalike.ocr.scenetext import SceneTextEngine

        return SceneTextEngine()
    if name == "tesseract":
        from lookalike.ocr.tesseract import TesseractEngine

        return TesseractEngine()
    raise ValueError(f"unknown OCR engine {name!r}; choose one of {', '.join(OCR_ENGINES)}")


def check_engine_name(name: str) -> str:
    """`name` if it is an engine, else a ValueError that lists them (for settings, the CLI)."""
    if name not in OCR_ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {', '.join(OCR_ENGINES)}")
    return name


def check_available(engine: str = DEFAULT_ENGINE) -> None:
    """Raise `OcrUnavailable` with an install hint unless `engine` can read."""
    get_engine(check_engine_name(engine)).check_available()


# -- normalisation ----------------------------------------------------------------------------------
_KATAKANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}  # ァ..ヶ -> ぁ..ゖ
# Traditional (and old Japanese) forms, and simplified ones a stroke away, -> today's Japanese
# forms. PP-OCR's dictionary is Chinese-first: it often writes 姬 for 姫, 稻 for 稲 or 宫 for
# 宮. Both a name and what is read are folded, so a name written in an old form still matches.
_VARIANTS = str.maketrans({pair[0]: pair[1] for pair in (
    "亞亜 惡悪 壓圧 圍囲 醫医 爲為 壹壱 隱隠 榮栄 營営 衞衛 驛駅 圓円 緣縁 鹽塩 奧奥 "
    "應応 歐欧 櫻桜 假仮 價価 畫画 會会 壞壊 懷懐 繪絵 擴拡 覺覚 學学 嶽岳 樂楽 卷巻 "
    "勸勧 寬寛 關関 歡歓 觀観 氣気 歸帰 舊旧 據拠 擧挙 虛虚 峽峡 狹狭 鄕郷 曉暁 區区 "
    "驅駆 勳勲 徑径 惠恵 溪渓 經経 繼継 輕軽 藝芸 擊撃 縣県 劍剣 險険 圈圏 檢検 權権 "
    "獻献 顯顕 驗験 嚴厳 廣広 恆恒 黃黄 鑛鉱 號号 國国 黑黒 碎砕 齋斎 濟済 雜雑 參参 "
    "蠶蚕 贊賛 殘残 絲糸 齒歯 兒児 辭辞 濕湿 實実 寫写 釋釈 壽寿 收収 從従 澁渋 獸獣 "
    "縱縦 處処 緖緒 將将 燒焼 稱称 證証 乘乗 條条 淨浄 狀状 疊畳 讓譲 觸触 寢寝 愼慎 "
    "眞真 盡尽 圖図 粹粋 醉酔 隨随 數数 瀨瀬 聲声 齊斉 靜静 攝摂 專専 淺浅 戰戦 踐践 "
    "錢銭 禪禅 雙双 壯壮 爭争 莊荘 巢巣 裝装 增増 藏蔵 續続 體体 對対 帶帯 臺台 瀧滝 "
    "擇択 澤沢 單単 擔担 團団 彈弾 斷断 遲遅 晝昼 蟲虫 鑄鋳 廳庁 聽聴 鎭鎮 鐵鉄 轉転 "
    "點点 傳伝 黨党 盜盗 燈灯 當当 德徳 獨独 讀読 屆届 繩縄 腦脳 廢廃 拜拝 賣売 麥麦 "
    "發発 髮髪 拔抜 祕秘 濱浜 拂払 佛仏 竝並 變変 邊辺 邉辺 辨弁 瓣弁 辯弁 舖舗 寶宝 "
    "豐豊 萬万 滿満 默黙 譯訳 藥薬 與与 譽誉 搖揺 樣様 來来 賴頼 亂乱 覽覧 龍竜 兩両 "
    "獵猟 綠緑 壘塁 勵励 禮礼 隸隷 靈霊 齡齢 戀恋 爐炉 勞労 樓楼 郞郎 錄録 灣湾 姬姫 "
    "稻稲 嶋島 髙高 﨑崎 峯峰  "
    "宫宮 吕呂 侣侶 户戸 别別 內内 兔兎 靑青 淸清 溫温 歲歳 每毎 步歩 涉渉 单単 弹弾 "
    "强強 曾曽 两両 亚亜 恶悪 值値 卽即 槪概 蟬蝉 噐器 铜銅 岛島 东東 门門 阁閣 馆館 "
    "园園 桥橋 龙竜 车車 长長 鸟鳥 马馬 见見 观観 间間 关関 "
).split()})


def normalise_text(text: str) -> str:
    """Fold what OCR and typography vary, keep what names differ in; words stay space-separated.

    NFKC, casefold, Latin diacritics removed (Inō -> ino, but Japanese dakuten kept),
    katakana -> hiragana, traditional kanji -> today's Japanese forms (姬 -> 姫), the long-vowel
    mark dropped, punctuation -> space, and no spaces between Japanese characters.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char) and out and out[-1].isascii():
            continue  # a Latin accent; Japanese (semi-)voiced marks are recombined below
        out.append(char)
    text = unicodedata.normalize("NFKC", "".join(out)).translate(_KATAKANA).translate(_VARIANTS)
    # The long-vowel mark is dropped: OCR loses it (a dash, a bar down a column) or reads it
    # as the kanji for one (タワ一) - which after kana is the mark - and names differ in it
    # far less than in their other characters.
    text = "".join("" if char == "ー" or (char == "一" and i and _is_kana(text[i - 1])) else char
                   for i, char in enumerate(text))
    words: list[str] = []
    word: list[str] = []
    for char in text:
        if char.isalnum() or unicodedata.category(char) == "Lm" or char == "々":
            word.append(char)
        else:
            if word:
                words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    joined = ""
    for word in words:
        if joined and not (_is_japanese(joined[-1]) and _is_japanese(word[0])):
            joined += " "
        joined += word
    return joined


def _is_kana(char: str) -> bool:
    return "\u3041" <= char <= "\u309f"


def _is_japanese(char: str) -> bool:
    return not char.isascii() and not ("\u00c0" <= char <= "\u024f")


def compact(text: str) -> str:
    """Normalised text without spaces: what names are matched against."""
    return normalise_text(text).replace(" ", "")


def legible(text: str) -> bool:
    """Whether a normalised reading is worth keeping: two letters or digits, or one Japanese
    character (a kanji is a word; a name cut by a post or a branch reads as a line and a
    character, which the joined text puts back together)."""
    letters = letter_count(text)
    return letters >= MIN_CHARS or (letters == 1 and _is_japanese(compact(text)[:1] or "a"))


def letter_count(text: str) -> int:
    return sum(1 for char in text if char.isalnum())

# -- reading ----------------------------------------------------------------------------------------
def read_text(image: Image.Image, max_side: int = MAX_SIDE, max_regions: int | None = None,
              min_confidence: float | None = None, engine: str = DEFAULT_ENGINE) -> list[TextLine]:
    """Lines of text legible in `image`, in reading order (top to bottom, right to left for
    vertical lines); boxes are in `image`'s pixels."""
    return read_signs(image, max_side, max_regions, min_confidence, engine)[0]


def read_signs(image: Image.Image, max_side: int = MAX_SIDE, max_regions: int | None = None,
               min_confidence: float | None = None, engine: str = DEFAULT_ENGINE,
               ) -> tuple[list[TextLine], list[tuple[str, float]]]:
    """`read_text`'s lines, and the doubtful readings (normalised text, confidence between
    DOUBTFUL_CONFIDENCE and `min_confidence`, the engine's own by default). Those are not shown
    as text, but a name can be looked for in them: an engine often reads a blurred or bold
    name right with little confidence, while texture it reads seldom spells a name."""
    reader = get_engine(check_engine_name(engine))
    min_confidence = reader.min_confidence if min_confidence is None else min_confidence
    rgb = np.asarray(image.convert("RGB"))
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    lines: list[TextLine] = []
    doubtful: list[tuple[str, float]] = []
    for reading in reader.read(rgb, max_regions or reader.max_regions):
        reads = [(raw, normalise_text(raw), confidence) for raw, confidence in
                 ((reading.raw, reading.confidence), *reading.alternatives)]
        reads = [read for read in reads if legible(read[1])]
        reads.sort(key=lambda read: -read[2])
        doubtful.extend((text, confidence) for _, text, confidence in reads
                        if DOUBTFUL_CONFIDENCE <= confidence < min_confidence)
        reads = [read for read in reads if read[2] >= min_confidence]
        if not reads:
            continue
        (raw, text, confidence), others = reads[0], reads[1:]
        alternatives: dict[str, float] = {}
        for _, other, other_confidence in others:  # best first: the first of each text
            if other != text:
                alternatives.setdefault(other, other_confidence)
        box = tuple(round(v / scale) for v in reading.box)
        lines.append(TextLine(text, raw, box, confidence, reading.vertical,
                              tuple(alternatives.items())))
    # The same text read from overlapping regions (words, and the whole line they form at a
    # coarser scale): keep the read with the most confidently read letters.
    lines.sort(key=lambda ln: -ln.confidence * letter_count(ln.text))
    kept: list[TextLine] = []
    for line in lines:
        if all(_covered(line, other) < 0.5 for other in kept):
            kept.append(line)
    best: dict[str, float] = {}
    for text, confidence in doubtful:
        best[text] = max(confidence, best.get(text, 0.0))
    return reading_order(kept), list(best.items())


def reading_order(lines: Sequence[TextLine]) -> list[TextLine]:
    """Horizontal lines row by row (top to bottom, left to right), then vertical lines column by
    column (right to left, top to bottom), so that a name split over two regions is joined in
    order."""
    across = sorted((ln for ln in lines if not ln.vertical), key=lambda ln: ln.box[1] + ln.box[3])
    rows: list[list[TextLine]] = []
    for line in across:
        middle, height = (line.box[1] + line.box[3]) / 2, line.box[3] - line.box[1]
        last = rows[-1][-1] if rows else None
        if last is not None and abs((last.box[1] + last.box[3]) / 2 - middle) < 0.5 * min(
                height, last.box[3] - last.box[1]):
            rows[-1].append(line)
        else:
            rows.append([line])
    ordered = [line for row in rows for line in sorted(row, key=lambda ln: ln.box[0])]
    down = sorted((ln for ln in lines if ln.vertical), key=lambda ln: -(ln.box[0] + ln.box[2]))
    columns: list[list[TextLine]] = []
    for line in down:
        middle, width = (line.box[0] + line.box[2]) / 2, line.box[2] - line.box[0]
        last = columns[-1][-1] if columns else None
        if last is not None and abs((last.box[0] + last.box[2]) / 2 - middle) < 0.5 * min(
                width, last.box[2] - last.box[0]):
            columns[-1].append(line)
        else:
            columns.append([line])
    return ordered + [line for column in columns for line in sorted(column, key=lambda ln: ln.box[1])]


def _covered(a: TextLine, b: TextLine) -> float:
    """How much of the smaller of two lines' boxes the other covers."""
    inter, area_a, area_b = boxes_overlap(a.box, b.box)
    return inter / max(1, min(area_a, area_b))


def joined_text(lines: Iterable[TextLine]) -> str:
    """All lines' text as one normalised string (lines separated by a space)."""
    return " ".join(line.text for line in lines)


# -- drawing ------------------------------------------------------------------------------------------
def _label_font(size: int) -> ImageFont.ImageFont:
    for path in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        if os.path.isfile(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def draw_text_boxes(image: Image.Image, lines: Sequence[TextLine | dict],
                    color: tuple[int, int, int] = (255, 40, 40)) -> Image.Image:
    """A copy of `image` with each line's box and what was read (text, confidence) drawn on it.

    `lines` may be `TextLine`s or their JSON dicts (`{"text", "box", "confidence"}`).
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 500))
    font = _label_font(max(12, round(max(canvas.size) / 60)))
    for line in lines:
        if isinstance(line, TextLine):
            line = line.to_json()
        x0, y0, x1, y1 = line["box"]
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        label = f"{line.get('raw') or line['text']} ({line['confidence']:.2f})"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y0 - (bottom - top) - 2 * width if y0 - (bottom - top) - 2 * width >= 0 else y1 + width
        tx = max(0, min(x0, canvas.width - (right - left) - 2 * width))  # keep the label inside
        draw.rectangle((tx, ty, tx + right - left + 2 * width, ty + bottom - top + 2 * width),
                       fill=color)
        draw.text((tx + width - left, ty + width - top), label, font=font, fill=(255, 255, 255))
    return canvas
