"""Synthetic look-alikes of multilingual LAION captions, and an independent oracle for script-aware term matching.

Benign words only: everyday vocabulary per script, and stand-in "terms" that are ordinary words playing the
known-bad role. Captions carry the evasions real ones show: a particle written onto a Hangul word, no spaces
in Han, kana and Thai, invisible format characters inside a word, syllables or letters spaced apart, hyphen
and joiner spellings. The oracle reads scripts from `unicodedata` names, one caption at a time, so it shares
nothing with the matcher's numpy tables; the benchmark imports this module too.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

# Words per script: captions are drawn from `VOCABULARY`, the bank from `TERMS` (each term is also a caption
# word of its script, so it appears in running text, not only where planted).
VOCABULARY: dict[str, list[str]] = {
    "latin": [
        "photo",
        "of",
        "a",
        "wooden",
        "table",
        "garden",
        "sunset",
        "over",
        "the",
        "harbour",
        "with",
        "red",
        "flowers",
        "on",
        "sale",
        "new",
        "style",
    ],
    "cyrillic": [
        "фото",
        "деревянный",
        "стол",
        "сад",
        "закат",
        "над",
        "гаванью",
        "с",
        "красными",
        "цветами",
        "новый",
        "стиль",
    ],
    "greek": ["φωτογραφία", "ξύλινο", "τραπέζι", "κήπος", "ηλιοβασίλεμα", "πάνω", "από", "το", "λιμάνι"],
    "arabic": ["صورة", "طاولة", "خشبية", "حديقة", "غروب", "الشمس", "فوق", "الميناء", "مع", "زهور", "حمراء"],
    "hangul": ["사진", "나무", "테이블", "정원", "일몰", "항구", "위의", "빨간", "꽃", "판매", "새로운", "스타일"],
    "han": list("的一是了我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"),
    "kana": ["ねこ", "いぬ", "カメラ", "テーブル", "はな", "の", "と", "が", "を", "に", "で", "から", "まで"],
    "thai": ["ภาพ", "โต๊ะ", "ไม้", "สวน", "พระอาทิตย์", "ตก", "ท่าเรือ", "ดอกไม้", "สีแดง", "ลด", "ราคา"],
}
TERMS: dict[str, list[str]] = {
    "latin": ["zorblax", "quinfrob", "t-shirt", "flim zap"],
    "cyrillic": ["блорф", "снаргл"],
    "greek": ["ζορβλαξ"],
    "arabic": ["كعكة", "زربلاكس"],
    "hangul": ["여성", "고양이", "북한", "사진기"],
    "han": ["蛋糕兔", "猫咖啡"],
    "kana": ["ネコカフェ", "うさぎ"],
    "thai": ["แมวดำ", "กระต่าย"],
}
UNSPACED = {"han", "kana", "thai"}
PARTICLES = ["의", "가", "이", "는", "은", "를", "을", "과", "와", "에서", "으로", "도", "만"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\ufe0f", "\U000e0101"]
_UNSPACED_NAMES = ("CJK ", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")


@dataclass(frozen=True)
class Caption:
    text: str
    script: str  # the script of the caption (and of its planted term, if any)
    planted: str | None  # the term planted, as written in the bank
    evasion: str  # how it was written: plain, particle, invisible, spaced, hyphen, inside-word, none


def spell(term: str, script: str, rng: random.Random) -> tuple[str, str]:
    """The term as a caption might write it, and the name of the trick."""
    trick = rng.choice(["plain", "invisible", "spaced", "hyphen", "particle", "inside-word"])
    if trick == "invisible" and len(term) > 1:
        at = rng.randrange(1, len(term))
        return term[:at] + rng.choice(INVISIBLE) + term[at:], trick
    if trick == "spaced" and script in ("hangul", "han", "latin") and " " not in term and "-" not in term:
        # Latin letters spaced apart beside the article `a` would join with it (`a q u i n` reads `aquin`).
        return ("." if script == "latin" else " ").join(term), trick
    if trick == "hyphen" and (" " in term or "-" in term):
        return rng.choice(
            [term.replace(" ", "").replace("-", ""), term.replace(" ", "-"), term.replace("-", " ")]
        ), trick
    if trick == "particle" and script == "hangul":
        return term + rng.choice(PARTICLES), trick
    if trick == "inside-word":  # a spaced-script term inside a longer word must not match; in Han it must
        return term + rng.choice(VOCABULARY[script]).replace(" ", ""), trick
    return term, "plain"


def make_captions(n: int, seed: int = 5, planted_share: float = 0.3) -> list[Caption]:
    rng = random.Random(seed)
    scripts = list(VOCABULARY)
    captions = []
    for _ in range(n):
        script = rng.choice(scripts)
        words = [rng.choice(VOCABULARY[script]) for _ in range(rng.randint(2, 12))]
        planted, evasion = None, "none"
        if rng.random() < planted_share:
            planted = rng.choice(TERMS[script])
            spelled, evasion = spell(planted, script, rng)
            words.insert(rng.randrange(len(words) + 1), spelled)
        joiner = "" if script in UNSPACED and rng.random() < 0.8 else " "
        text = joiner.join(words)
        if rng.random() < 0.2:
            text = text.upper() if script in ("latin", "cyrillic", "greek") else text + rng.choice(["!!", " 🙂", "…"])
        captions.append(Caption(text, script, planted, evasion))
    return captions


def all_terms() -> list[str]:
    return [term for terms in TERMS.values() for term in terms]


def _kind(char: str | None) -> str | None:
    """None for no character or a non-word one; else hangul, unspaced or spaced."""
    if char is None or unicodedata.category(char)[0] not in "LNM":
        return None
    name = unicodedata.name(char, "")
    if name.startswith("HANGUL"):
        return "hangul"
    if name.startswith(_UNSPACED_NAMES):
        return "unspaced"
    return "spaced"


def boundary_ok(before: str | None, first: str, last: str, after: str | None) -> bool:
    """Substring-plus-boundary, per character: whole words in spaced scripts, a Hangul word's start (any
    particle after it), nothing in scripts without spaces, and a change to or from Hangul is a boundary."""
    kb, kf, kl, ka = _kind(before), _kind(first), _kind(last), _kind(after)
    start = kb is None or "unspaced" in (kb, kf) or (kb == "hangul") != (kf == "hangul")
    end = ka is None or "unspaced" in (kl, ka) or "hangul" in (kl, ka)
    return start and end


def oracle_matches(caption: str, spellings: list[str]) -> bool:
    """Whether any spelling occurs in the (already normalised) caption on script-aware boundaries."""
    for spelling in spellings:
        at = caption.find(spelling)
        while at >= 0:
            end = at + len(spelling)
            before = caption[at - 1] if at else None
            after = caption[end] if end < len(caption) else None
            if boundary_ok(before, spelling[0], spelling[-1], after):
                return True
            at = caption.find(spelling, at + 1)
    return False


def joined_spellings(pattern: str) -> list[str]:
    """A normalised term, its spelling with every space dropped (terms here have at most one space), and for a
    one-word term of 4 to 32 characters its spelling with a space after a first letter of a spaced script
    (`tshirt` ~ `t shirt`, as `t-shirt` ~ `tshirt`)."""
    splits = []
    prefix_is_letter = all(unicodedata.category(c)[0] in "LN" and _kind(c) != "unspaced" for c in pattern[:2])
    if " " not in pattern and 4 <= len(pattern) <= 32 and prefix_is_letter:
        splits = [pattern[0] + " " + pattern[1:]]
    return list(dict.fromkeys([pattern, pattern.replace(" ", ""), *splits]))
