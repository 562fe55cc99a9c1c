#!/usr/bin/env python
"""Build the bundled synthetic fixtures under stilts_ds/resources/fixtures/.

Every row is written by this script, for this project: sentences come from small
per-language lexicons (people, cities, objects, organisations, numbers, years) and
templates, never from a real data set. Rows use the real hub row schemas (field names
and types as in the Hugging Face rows), one JSON object per line.

Labels follow simple, consistent surface patterns so that a tiny model can learn them:

* NLI: the hypothesis restates the premise (entailment), negates it (contradiction) or
  talks about something else (neutral).
* Paraphrase: the same content in another order (1), or one content word replaced (0).
* Span QA: the answer is the entity / number / year the question's wording points to.
* Multiple choice: the right choice shares a keyword with the context (or is the fixed
  associate of the question's concept, for CommonsenseQA).
* Tagging: one tag per word class; retrieval: sentence i and its English translation.

Deterministic: every file has its own seeded ``random.Random`` (seed = hash of the file
path), so running twice gives byte-identical files; each file is written atomically
(temporary file + ``os.replace``). ``--check`` builds in memory and reports files that
differ from what is on disk (exit 1), without writing.

Usage: python tools/build_fixtures.py [--out DIR] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import string
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "stilts_ds" / "resources" / "fixtures"

N_TRAIN = 32
N_EVAL = 24

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def rng_for(*parts: object) -> random.Random:
    """A private, stable RNG for one output (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stable_hex(*parts: object, n: int = 24) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:n]


_FMT = string.Formatter()


def fill(template: str, values: dict) -> tuple[str, dict]:
    """Format ``template`` and record where each field landed: (text, {field: (start, end)})."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for literal, field, _spec, _conv in _FMT.parse(template):
        out.append(literal)
        pos += len(literal)
        if field is not None:
            value = values[field]
            spans.setdefault(field, (pos, pos + len(value)))
            out.append(value)
            pos += len(value)
    return "".join(out), spans


_BN_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")


def bn_digits(s: str) -> str:
    return s.translate(_BN_DIGITS)


def _hangul_final(word: str) -> int:
    """Final consonant index of the last Hangul syllable (0: none)."""
    ch = word[-1]
    if "가" <= ch <= "힣":
        return (ord(ch) - 0xAC00) % 28
    return 0


def ko_josa(word: str, with_final: str, without_final: str) -> str:
    return with_final if _hangul_final(word) else without_final


def ko_ro(word: str) -> str:
    final = _hangul_final(word)
    return "으로" if final and final != 8 else "로"  # 8 = ㄹ takes 로


def te_suffix(word: str, suffix: str) -> str:
    # After a virama-final word Telugu writes a zero-width non-joiner before the case suffix.
    return ("\u200c" if word.endswith("్") else "") + suffix


# ---------------------------------------------------------------------------------------
# Lexicons (every form written for this project)
# ---------------------------------------------------------------------------------------

# given names, gender (for verb agreement), and the name in each language
PEOPLE = [
    dict(g="f", en="Anna", de="Anna", fr="Anna", ru="Анна", zh="安娜", ar="آنا", hi="अन्ना",
         ja="アンナ", ko="안나", bn="আন্না", te="అన్నా"),
    dict(g="m", en="Omar", de="Omar", fr="Omar", ru="Омар", zh="奥马尔", ar="عمر", hi="उमर",
         ja="オマル", ko="오마르", bn="ওমর", te="ఒమర్"),
    dict(g="m", en="Ivan", de="Iwan", fr="Ivan", ru="Иван", zh="伊万", ar="إيفان", hi="इवान",
         ja="イワン", ko="이반", bn="ইভান", te="ఇవాన్"),
    dict(g="f", en="Maria", de="Maria", fr="Maria", ru="Мария", zh="玛丽亚", ar="ماريا", hi="मारिया",
         ja="マリア", ko="마리아", bn="মারিয়া", te="మరియా"),
    dict(g="m", en="Ravi", de="Ravi", fr="Ravi", ru="Рави", zh="拉维", ar="رافي", hi="रवि",
         ja="ラヴィ", ko="라비", bn="রবি", te="రవి"),
    dict(g="f", en="Leila", de="Leila", fr="Leïla", ru="Лейла", zh="莱拉", ar="ليلى", hi="लैला",
         ja="ライラ", ko="레일라", bn="লায়লা", te="లైలా"),
    dict(g="m", en="David", de="David", fr="David", ru="Давид", zh="大卫", ar="ديفيد", hi="डेविड",
         ja="デビッド", ko="데이비드", bn="ডেভিড", te="డేవిడ్"),
    dict(g="f", en="Lina", de="Lina", fr="Lina", ru="Лина", zh="丽娜", ar="لينا", hi="लीना",
         ja="リナ", ko="리나", bn="লীনা", te="లీనా"),
    dict(g="m", en="Karim", de="Karim", fr="Karim", ru="Карим", zh="卡里姆", ar="كريم", hi="करीम",
         ja="カリム", ko="카림", bn="করিম", te="కరీం"),
    dict(g="f", en="Sofia", de="Sofia", fr="Sofia", ru="София", zh="索菲亚", ar="صوفيا", hi="सोफिया",
         ja="ソフィア", ko="소피아", bn="সোফিয়া", te="సోఫియా"),
    dict(g="m", en="Tom", de="Tom", fr="Tom", ru="Том", zh="汤姆", ar="توم", hi="टॉम",
         ja="トム", ko="톰", bn="টম", te="టామ్"),
    dict(g="f", en="Nadia", de="Nadia", fr="Nadia", ru="Надя", zh="娜迪亚", ar="نادية", hi="नादिया",
         ja="ナディア", ko="나디아", bn="নাদিয়া", te="నాదియా"),
]

# surnames for PAN-X full names (none of them inflects for gender in Russian)
SURNAMES = dict(
    en=["Smith", "Khan", "Lopez", "Novak", "Haddad", "Sharma"],
    ru=["Смит", "Хан", "Лопес", "Новак", "Хаддад", "Шарма"],
    ar=["سميث", "خان", "لوبيز", "نوفاك", "حداد", "شارما"],
    hi=["स्मिथ", "खान", "लोपेज", "नोवाक", "हद्दाद", "शर्मा"],
    zh=["史密斯", "汗", "洛佩斯", "诺瓦克", "哈达德", "夏尔马"],
)

# cities; fr = (nominative, preposition, name after the preposition);
# ru = (nominative, locative after "в", accusative after "в"); bn = (name, locative suffix)
CITIES = [
    dict(en="Paris", de="Paris", fr=("Paris", "à", "Paris"), ru=("Париж", "Париже", "Париж"),
         zh="巴黎", ar="باريس", hi="पेरिस", ja="パリ", ko="파리", bn=("প্যারিস", "ে"), te="పారిస్"),
    dict(en="Cairo", de="Kairo", fr=("Le Caire", "au", "Caire"), ru=("Каир", "Каире", "Каир"),
         zh="开罗", ar="القاهرة", hi="काहिरा", ja="カイロ", ko="카이로", bn=("কায়রো", "তে"), te="కైరో"),
    dict(en="Delhi", de="Delhi", fr=("Delhi", "à", "Delhi"), ru=("Дели", "Дели", "Дели"),
         zh="德里", ar="دلهي", hi="दिल्ली", ja="デリー", ko="델리", bn=("দিল্লি", "তে"), te="ఢిల్లీ"),
    dict(en="Moscow", de="Moskau", fr=("Moscou", "à", "Moscou"), ru=("Москва", "Москве", "Москву"),
         zh="莫斯科", ar="موسكو", hi="मॉस्को", ja="モスクワ", ko="모스크바", bn=("মস্কো", "তে"), te="మాస్కో"),
    dict(en="Beijing", de="Peking", fr=("Pékin", "à", "Pékin"), ru=("Пекин", "Пекине", "Пекин"),
         zh="北京", ar="بكين", hi="बीजिंग", ja="北京", ko="베이징", bn=("বেইজিং", "য়ে"), te="బీజింగ్"),
    dict(en="Berlin", de="Berlin", fr=("Berlin", "à", "Berlin"), ru=("Берлин", "Берлине", "Берлин"),
         zh="柏林", ar="برلين", hi="बर्लिन", ja="ベルリン", ko="베를린", bn=("বার্লিন", "ে"), te="బెర్లిన్"),
    dict(en="Tokyo", de="Tokio", fr=("Tokyo", "à", "Tokyo"), ru=("Токио", "Токио", "Токио"),
         zh="东京", ar="طوكيو", hi="टोक्यो", ja="東京", ko="도쿄", bn=("টোকিও", "তে"), te="టోక్యో"),
    dict(en="Madrid", de="Madrid", fr=("Madrid", "à", "Madrid"), ru=("Мадрид", "Мадриде", "Мадрид"),
         zh="马德里", ar="مدريد", hi="मैड्रिड", ja="マドリード", ko="마드리드", bn=("মাদ্রিদ", "ে"), te="మాడ్రిడ్"),
    dict(en="Rome", de="Rom", fr=("Rome", "à", "Rome"), ru=("Рим", "Риме", "Рим"),
         zh="罗马", ar="روما", hi="रोम", ja="ローマ", ko="로마", bn=("রোম", "ে"), te="రోమ్"),
    dict(en="Lima", de="Lima", fr=("Lima", "à", "Lima"), ru=("Лима", "Лиме", "Лиму"),
         zh="利马", ar="ليما", hi="लीमा", ja="リマ", ko="리마", bn=("লিমা", "তে"), te="లిమా"),
]

# objects (bought in numbers 5..10); ru = (genitive plural, accusative plural);
# zh/ja/ko = (measure word or counter, noun) order as used; ar = (plural, definite plural,
# singular accusative after كم); hi = (plural, gender that the perfective verb agrees with)
OBJECTS = [
    dict(en="books", de="Bücher", fr="livres", ru=("книг", "книги"), zh=("本", "书"),
         ar=("كتب", "الكتب", "كتابا"), hi=("किताबें", "f"), ja=("本", "冊"), ko=("책", "권"),
         bn="বই", te="పుస్తకాలు"),
    dict(en="apples", de="Äpfel", fr="pommes", ru=("яблок", "яблоки"), zh=("个", "苹果"),
         ar=("تفاحات", "التفاح", "تفاحة"), hi=("सेब", "m"), ja=("りんご", "個"), ko=("사과", "개"),
         bn="আপেল", te="ఆపిల్ పండ్లు"),
    dict(en="chairs", de="Stühle", fr="chaises", ru=("стульев", "стулья"), zh=("把", "椅子"),
         ar=("كراسي", "الكراسي", "كرسيا"), hi=("कुर्सियाँ", "f"), ja=("椅子", "脚"), ko=("의자", "개"),
         bn="চেয়ার", te="కుర్చీలు"),
    dict(en="tickets", de="Fahrkarten", fr="billets", ru=("билетов", "билеты"), zh=("张", "票"),
         ar=("تذاكر", "التذاكر", "تذكرة"), hi=("टिकट", "m"), ja=("チケット", "枚"), ko=("표", "장"),
         bn="টিকিট", te="టిక్కెట్లు"),
    dict(en="pens", de="Stifte", fr="stylos", ru=("ручек", "ручки"), zh=("支", "笔"),
         ar=("أقلام", "الأقلام", "قلما"), hi=("पेन", "m"), ja=("ペン", "本"), ko=("펜", "자루"),
         bn="কলম", te="పెన్నులు"),
]

# organisations (workplaces); de = (preposition + article, name); ru = locative after "в"
ORGS = [
    dict(en="the National Museum", de=("im", "Nationalmuseum"), fr="au Musée national",
         ru="Национальном музее", zh="国家博物馆", ar="المتحف الوطني", hi="राष्ट्रीय संग्रहालय"),
    dict(en="the City Hospital", de=("im", "Stadtkrankenhaus"), fr="à l'Hôpital municipal",
         ru="Городской больнице", zh="市立医院", ar="مستشفى المدينة", hi="सिटी अस्पताल"),
    dict(en="Northwind Bank", de=("bei der", "Northwind Bank"), fr="à la banque Northwind",
         ru="банке Нортвинд", zh="北风银行", ar="بنك نورثويند", hi="नॉर्थविंड बैंक"),
    dict(en="Eastern University", de=("an der", "Ostuniversität"), fr="à l'Université de l'Est",
         ru="Восточном университете", zh="东方大学", ar="الجامعة الشرقية", hi="पूर्वी विश्वविद्यालय"),
    dict(en="the Central Library", de=("in der", "Zentralbibliothek"), fr="à la Bibliothèque centrale",
         ru="Центральной библиотеке", zh="中央图书馆", ar="المكتبة المركزية", hi="केंद्रीय पुस्तकालय"),
]

CITY_ADJ = dict(
    en=["big", "old", "beautiful", "quiet"],
    de=["große", "alte", "schöne", "ruhige"],
    fr=["grande ville", "ville ancienne", "belle ville", "ville calme"],
    ru=["большой", "старый", "красивый", "тихий"],
    zh=["大", "古老的", "美丽的", "安静的"],
    ar=["كبيرة", "قديمة", "جميلة", "هادئة"],
    hi=["बड़ा", "पुराना", "सुंदर", "शांत"],
    bn=["বড়", "পুরনো", "সুন্দর", "শান্ত"],
    te=["పెద్ద", "పాత", "అందమైన", "ప్రశాంతమైన"],
)

YEARS = list(range(1985, 2021))
NUMBERS = list(range(5, 11))  # 5..10 keeps Russian (genitive plural) and Arabic (plural) agreement simple

# ---------------------------------------------------------------------------------------
# Events: one meaning, rendered in any language
# ---------------------------------------------------------------------------------------

EVENT_TYPES = ("travel", "buy", "born", "work")
LANG_EVENT_TYPES = {lang: EVENT_TYPES for lang in ("en", "de", "fr", "ru", "zh", "ar", "hi")}
LANG_EVENT_TYPES.update(bn=("travel", "buy", "born"), te=("travel", "buy", "born"))


def sample_event(rng: random.Random, etype: str, avoid: dict | None = None) -> dict:
    """A random event; ``avoid`` holds values (person, city, ...) the event must not reuse."""
    avoid = avoid or {}
    while True:
        ev = dict(
            type=etype,
            p=rng.randrange(len(PEOPLE)),
            c=rng.randrange(len(CITIES)),
            y=rng.choice(YEARS),
            n=rng.choice(NUMBERS),
            o=rng.randrange(len(OBJECTS)),
            org=rng.randrange(len(ORGS)),
            adj=rng.randrange(4),
        )
        if all(ev[k] not in vals for k, vals in avoid.items()):
            return ev


def slots(lang: str, ev: dict) -> dict:
    """Every surface form the templates of ``lang`` may need for event ``ev``."""
    person, city, obj = PEOPLE[ev["p"]], CITIES[ev["c"]], OBJECTS[ev["o"]]
    org = ORGS[ev["org"]]
    fem = person["g"] == "f"
    v = {"p": person[lang], "y": str(ev["y"]), "n": str(ev["n"])}
    if lang == "en":
        adj = CITY_ADJ["en"][ev["adj"]]
        v.update(c=city["en"], o=obj["en"], org=org["en"], adj=adj, art="an" if adj[0] in "aeiou" else "a")
    elif lang == "de":
        v.update(c=city["de"], o=obj["de"], org_prep=org["de"][0], org=org["de"][1],
                 adj=CITY_ADJ["de"][ev["adj"]])
    elif lang == "fr":
        nom, prep, after = city["fr"]
        v.update(c_nom=nom, cp=prep, c=after, o=obj["fr"], org=org["fr"],
                 born="née" if fem else "né", adj=CITY_ADJ["fr"][ev["adj"]])
    elif lang == "ru":
        nom, loc, acc = city["ru"]
        v.update(c_nom=nom, c_loc=loc, c_acc=acc, o_gen=obj["ru"][0], o_acc=obj["ru"][1],
                 org=org["ru"], adj=CITY_ADJ["ru"][ev["adj"]],
                 went="поехала" if fem else "поехал", was="была" if fem else "был",
                 went_neg="ездила" if fem else "ездил", bought="купила" if fem else "купил",
                 buy_neg="покупала" if fem else "покупал", born="родилась" if fem else "родился")
    elif lang == "zh":
        v.update(c=city["zh"], m=obj["zh"][0], o=obj["zh"][1], org=org["zh"],
                 adj=CITY_ADJ["zh"][ev["adj"]])
    elif lang == "ar":
        v.update(c=city["ar"], o=obj["ar"][0], o_def=obj["ar"][1], o_acc=obj["ar"][2], org=org["ar"],
                 adj=CITY_ADJ["ar"][ev["adj"]],
                 traveled="سافرت" if fem else "سافر", went="ذهبت" if fem else "ذهب",
                 bought="اشترت" if fem else "اشترى", born="ولدت" if fem else "ولد",
                 works="تعمل" if fem else "يعمل", neg_travel="تسافر" if fem else "يسافر",
                 neg_buy="تشتر" if fem else "يشتر", neg_born="تولد" if fem else "يولد",
                 employee="موظفة" if fem else "موظف")
    elif lang == "hi":
        obj_fem = obj["hi"][1] == "f"
        v.update(c=city["hi"], o=obj["hi"][0], org=org["hi"], adj=CITY_ADJ["hi"][ev["adj"]],
                 went="गई" if fem else "गया", went_perf="गई थी" if fem else "गया था",
                 does="करती" if fem else "करता",
                 bought="खरीदीं" if obj_fem else "खरीदे", kitne="कितनी" if obj_fem else "कितने")
    elif lang == "bn":
        name, suffix = city["bn"]
        v.update(c=name, cs=suffix, o=obj["bn"], y=bn_digits(v["y"]), n=bn_digits(v["n"]),
                 adj=CITY_ADJ["bn"][ev["adj"]])
    elif lang == "te":
        name = city["te"]
        v.update(c=name, dat=te_suffix(name, "కు"), loc=te_suffix(name, "లో"), o=obj["te"],
                 adj=CITY_ADJ["te"][ev["adj"]])
    else:
        raise KeyError(lang)
    return v


# forms: full (the event), short (restates it: entailed), neg (negates it: contradiction),
# fact (a sentence about a city; unrelated to any person's event)
EVENT_T = {
    "en": {
        "travel": dict(full="{p} traveled to {c} in {y}.", short="{p} went to {c}.",
                       neg="{p} did not travel to {c}."),
        "buy": dict(full="{p} bought {n} {o} in {c}.", short="{p} bought some {o}.",
                    neg="{p} did not buy any {o}."),
        "born": dict(full="{p} was born in {c} in {y}.", short="{p} was born in {c}.",
                     neg="{p} was not born in {c}."),
        "work": dict(full="{p} works at {org}.", short="{p} has a job at {org}.",
                     neg="{p} does not work at {org}."),
        "fact": "{c} is {art} {adj} city.",
    },
    "de": {
        "travel": dict(full="{p} reiste im Jahr {y} nach {c}.", short="{p} war in {c}.",
                       neg="{p} reiste nicht nach {c}."),
        "buy": dict(full="{p} kaufte {n} {o} in {c}.", short="{p} kaufte einige {o}.",
                    neg="{p} kaufte keine {o}."),
        "born": dict(full="{p} wurde im Jahr {y} in {c} geboren.", short="{p} wurde in {c} geboren.",
                     neg="{p} wurde nicht in {c} geboren."),
        "work": dict(full="{p} arbeitet {org_prep} {org}.", short="{p} ist {org_prep} {org} angestellt.",
                     neg="{p} arbeitet nicht {org_prep} {org}."),
        "fact": "{c} ist eine {adj} Stadt.",
    },
    "fr": {
        "travel": dict(full="{p} a voyagé {cp} {c} en {y}."),
        "buy": dict(full="{p} a acheté {n} {o} {cp} {c}."),
        "born": dict(full="{p} est {born} {cp} {c} en {y}."),
        "work": dict(full="{p} travaille {org}."),
        "fact": "{c_nom} est une {adj}.",
    },
    "ru": {
        "travel": dict(full="{p} {went} в {c_acc} в {y} году.", short="{p} {was} в {c_loc}.",
                       neg="{p} не {went_neg} в {c_acc}."),
        "buy": dict(full="{p} {bought} {n} {o_gen} в {c_loc}.", short="{p} {bought} {o_acc}.",
                    neg="{p} не {buy_neg} {o_gen}."),
        "born": dict(full="{p} {born} в {c_loc} в {y} году.", short="{p} {born} в {c_loc}.",
                     neg="{p} {born} не в {c_loc}."),
        "work": dict(full="{p} работает в {org}.", short="{p} трудится в {org}.",
                     neg="{p} не работает в {org}."),
        "fact": "{c_nom} — {adj} город.",
    },
    "zh": {
        "travel": dict(full="{p}在{y}年去了{c}。", short="{p}去过{c}。", neg="{p}没有去过{c}。"),
        "buy": dict(full="{p}在{c}买了{n}{m}{o}。", short="{p}买了一些{o}。", neg="{p}没有买{o}。"),
        "born": dict(full="{p}于{y}年出生在{c}。", short="{p}出生在{c}。", neg="{p}不是在{c}出生的。"),
        "work": dict(full="{p}在{org}工作。", short="{p}在{org}上班。", neg="{p}不在{org}工作。"),
        "fact": "{c}是一座{adj}城市。",
    },
    "ar": {
        "travel": dict(full="{traveled} {p} إلى {c} في عام {y}.", short="{went} {p} إلى {c}.",
                       neg="لم {neg_travel} {p} إلى {c}."),
        "buy": dict(full="{bought} {p} {n} {o} في {c}.", short="{bought} {p} بعض {o_def}.",
                    neg="لم {neg_buy} {p} {o_def}."),
        "born": dict(full="{born} {p} في {c} في عام {y}.", short="{born} {p} في {c}.",
                     neg="لم {neg_born} {p} في {c}."),
        "work": dict(full="{works} {p} في {org}.", short="{p} {employee} في {org}.",
                     neg="لا {works} {p} في {org}."),
        "fact": "{c} مدينة {adj}.",
    },
    "hi": {
        "travel": dict(full="{p} {y} में {c} {went}।", short="{p} {c} {went_perf}।",
                       neg="{p} {c} नहीं {went}।"),
        "buy": dict(full="{p} ने {c} में {n} {o} {bought}।", short="{p} ने कुछ {o} {bought}।",
                    neg="{p} ने {o} नहीं {bought}।"),
        "born": dict(full="{p} का जन्म {y} में {c} में हुआ था।", short="{p} का जन्म {c} में हुआ था।",
                     neg="{p} का जन्म {c} में नहीं हुआ था।"),
        "work": dict(full="{p} {org} में काम {does} है।", short="{p} {org} में नौकरी {does} है।",
                     neg="{p} {org} में काम नहीं {does}।"),
        "fact": "{c} एक {adj} शहर है।",
    },
    "bn": {
        "travel": dict(full="{p} {y} সালে {c}{cs} গিয়েছিলেন।"),
        "buy": dict(full="{p} {c}{cs} {n}টি {o} কিনেছিলেন।"),
        "born": dict(full="{p} {y} সালে {c}{cs} জন্মগ্রহণ করেন।"),
        "fact": "{c} একটি {adj} শহর।",
    },
    "te": {
        "travel": dict(full="{p} {y}లో {c}{dat} వెళ్ళారు."),
        "buy": dict(full="{p} {c}{loc} {n} {o} కొన్నారు."),
        "born": dict(full="{p} {y}లో {c}{loc} జన్మించారు."),
        "fact": "{c} ఒక {adj} నగరం.",
    },
}

# questions per event type: (template, field of the full sentence that answers it)
QUESTIONS = {
    "en": {
        "travel": [("Where did {p} travel in {y}?", "c"), ("In which year did {p} travel to {c}?", "y"),
                   ("Who traveled to {c} in {y}?", "p")],
        "buy": [("How many {o} did {p} buy in {c}?", "n"), ("Where did {p} buy {n} {o}?", "c"),
                ("Who bought {n} {o} in {c}?", "p")],
        "born": [("Where was {p} born?", "c"), ("In what year was {p} born?", "y")],
        "work": [("Where does {p} work?", "org")],
    },
    "de": {
        "travel": [("Wohin reiste {p} im Jahr {y}?", "c"), ("In welchem Jahr reiste {p} nach {c}?", "y"),
                   ("Wer reiste im Jahr {y} nach {c}?", "p")],
        "buy": [("Wie viele {o} kaufte {p} in {c}?", "n"), ("Wo kaufte {p} {n} {o}?", "c"),
                ("Wer kaufte {n} {o} in {c}?", "p")],
        "born": [("Wo wurde {p} geboren?", "c"), ("In welchem Jahr wurde {p} geboren?", "y")],
        "work": [("Wo arbeitet {p}?", "org")],
    },
    "ru": {
        "travel": [("Куда {went} {p} в {y} году?", "c_acc"), ("В каком году {p} {went} в {c_acc}?", "y"),
                   ("Кто поехал в {c_acc} в {y} году?", "p")],
        "buy": [("Сколько {o_gen} {bought} {p} в {c_loc}?", "n"), ("Где {p} {bought} {n} {o_gen}?", "c_loc"),
                ("Кто купил {n} {o_gen} в {c_loc}?", "p")],
        "born": [("Где {born} {p}?", "c_loc"), ("В каком году {born} {p}?", "y")],
        "work": [("Где работает {p}?", "org")],
    },
    "zh": {
        "travel": [("{p}在{y}年去了哪里？", "c"), ("{p}在哪一年去了{c}？", "y"), ("谁在{y}年去了{c}？", "p")],
        "buy": [("{p}在{c}买了多少{m}{o}？", "n"), ("{p}在哪里买了{n}{m}{o}？", "c"),
                ("谁在{c}买了{n}{m}{o}？", "p")],
        "born": [("{p}出生在哪里？", "c"), ("{p}是哪一年出生的？", "y")],
        "work": [("{p}在哪里工作？", "org")],
    },
    "ar": {
        "travel": [("إلى أين {traveled} {p} في عام {y}؟", "c"), ("في أي عام {traveled} {p} إلى {c}؟", "y"),
                   ("من سافر إلى {c} في عام {y}؟", "p")],
        "buy": [("كم {o_acc} {bought} {p} في {c}؟", "n"), ("أين {bought} {p} {n} {o}؟", "c"),
                ("من اشترى {n} {o} في {c}؟", "p")],
        "born": [("أين {born} {p}؟", "c"), ("في أي عام {born} {p}؟", "y")],
        "work": [("أين {works} {p}؟", "org")],
    },
    "hi": {
        "travel": [("{p} {y} में कहाँ {went}?", "c"), ("{p} किस साल {c} {went}?", "y"),
                   ("{y} में {c} कौन गया?", "p")],
        "buy": [("{p} ने {c} में {kitne} {o} {bought}?", "n"), ("{p} ने {n} {o} कहाँ {bought}?", "c"),
                ("{c} में {n} {o} किसने {bought}?", "p")],
        "born": [("{p} का जन्म कहाँ हुआ था?", "c"), ("{p} का जन्म किस साल हुआ था?", "y")],
        "work": [("{p} कहाँ काम {does} है?", "org")],
    },
    "bn": {
        "travel": [("{p} {y} সালে কোথায় গিয়েছিলেন?", "c"), ("{p} কোন সালে {c}{cs} গিয়েছিলেন?", "y"),
                   ("{y} সালে কে {c}{cs} গিয়েছিলেন?", "p")],
        "buy": [("{p} {c}{cs} কয়টি {o} কিনেছিলেন?", "n"), ("{p} কোথায় {n}টি {o} কিনেছিলেন?", "c")],
        "born": [("{p} কোথায় জন্মগ্রহণ করেন?", "c"), ("{p} কোন সালে জন্মগ্রহণ করেন?", "y")],
    },
    "te": {
        "travel": [("{p} {y}లో ఎక్కడికి వెళ్ళారు?", "c"), ("{p} ఏ సంవత్సరంలో {c}{dat} వెళ్ళారు?", "y"),
                   ("{y}లో {c}{dat} ఎవరు వెళ్ళారు?", "p")],
        "buy": [("{p} {c}{loc} ఎన్ని {o} కొన్నారు?", "n"), ("{p} {n} {o} ఎక్కడ కొన్నారు?", "c")],
        "born": [("{p} ఎక్కడ జన్మించారు?", "c"), ("{p} ఏ సంవత్సరంలో జన్మించారు?", "y")],
    },
}

SENT_JOIN = {"zh": "", "ja": ""}


def render(lang: str, ev: dict, form: str = "full") -> tuple[str, dict, dict]:
    """(text, spans, slot values) for one event in one language."""
    values = slots(lang, ev)
    template = EVENT_T[lang]["fact"] if form == "fact" else EVENT_T[lang][ev["type"]][form]
    text, spans = fill(template, values)
    return text, spans, values


# ---------------------------------------------------------------------------------------
# Pair classification: NLI (MNLI / ANLI+ / XNLI), QQP, PAWS-X
# ---------------------------------------------------------------------------------------

NLI_NAMES = ("entailment", "neutral", "contradiction")  # ids 0, 1, 2 as on the hub


def nli_pair(rng: random.Random, lang: str, label: int, two_sentences: bool = False) -> tuple[str, str]:
    ev = sample_event(rng, rng.choice(EVENT_TYPES))
    premise, _, _ = render(lang, ev)
    if two_sentences:  # ANLI-style longer premise: add a sentence about another city
        fact_ev = sample_event(rng, "travel", avoid={"c": {ev["c"]}})
        fact, _, _ = render(lang, fact_ev, "fact")
        premise = premise + SENT_JOIN.get(lang, " ") + fact
    if label == 0:
        hypothesis, _, _ = render(lang, ev, "short")
    elif label == 2:
        hypothesis, _, _ = render(lang, ev, "neg")
    else:
        other_type = rng.choice([t for t in EVENT_TYPES if t != ev["type"]])
        other = sample_event(rng, other_type, avoid={"p": {ev["p"]}, "c": {ev["c"]}})
        hypothesis, _, _ = render(lang, other, rng.choice(["fact", "short"]))
    return premise, hypothesis


def balanced_labels(rng: random.Random, n: int, k: int) -> list[int]:
    labels = [i % k for i in range(n)]
    rng.shuffle(labels)
    return labels


def unique_rows(rng: random.Random, n: int, make, key) -> list:
    rows, seen = [], set()
    for i in range(n):
        for _ in range(1000):
            row = make(i)
            if key(row) not in seen:
                break
        else:  # pragma: no cover - the lexicons are far larger than any file
            raise RuntimeError("could not draw a unique row")
        seen.add(key(row))
        rows.append(row)
    return rows


def build_mnli(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 3)

    def make(i):
        premise, hypothesis = nli_pair(rng, "en", labels[i])
        return {"premise": premise, "hypothesis": hypothesis, "label": labels[i], "idx": i}

    return unique_rows(rng, n, make, lambda r: (r["premise"], r["hypothesis"]))


ANLI_SOURCES = ("anli_r1", "anli_r2", "anli_r3", "mnli", "snli")


def build_anli_plus(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 3)
    sources = [ANLI_SOURCES[i % len(ANLI_SOURCES)] for i in range(n)]
    rng.shuffle(sources)
    if split == "train":  # two SNLI rows without a gold label (the reader drops label -1)
        for i in (5, 17):
            sources[i] = "snli"

    def make(i):
        label = labels[i]
        premise, hypothesis = nli_pair(rng, "en", label, two_sentences=sources[i].startswith("anli"))
        if split == "train" and i in (5, 17):
            label = -1
        return {"premise": premise, "hypothesis": hypothesis, "label": label, "source": sources[i]}

    return unique_rows(rng, n, make, lambda r: (r["premise"], r["hypothesis"]))


def build_xnli(split: str, lang: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 3)

    def make(i):
        premise, hypothesis = nli_pair(rng, lang, labels[i])
        return {"language": lang, "sentence1": premise, "sentence2": hypothesis,
                "gold_label": NLI_NAMES[labels[i]]}

    return unique_rows(rng, n, make, lambda r: (r["sentence1"], r["sentence2"]))


QQP_GROUPS = [
    (["Where was {p} born?", "In which city was {p} born?", "What is the birthplace of {p}?"], ("p",)),
    (["How many {o} did {p} buy in {c}?", "What number of {o} did {p} buy in {c}?",
      "In {c}, how many {o} did {p} buy?"], ("p", "o", "c")),
    (["When did {p} travel to {c}?", "In what year did {p} travel to {c}?",
      "What year did {p} go to {c}?"], ("p", "c")),
    (["Where does {p} work?", "What is the workplace of {p}?", "At which place does {p} work?"], ("p",)),
    (["Why did {p} move to {c}?", "What made {p} move to {c}?", "For what reason did {p} move to {c}?"],
     ("p", "c")),
    (["What is the best way to get from {c} to {c2}?", "How do I best travel from {c} to {c2}?",
      "What is the easiest route from {c} to {c2}?"], ("c", "c2")),
]

_QQP_POOLS = {"p": [p["en"] for p in PEOPLE], "c": [c["en"] for c in CITIES],
              "c2": [c["en"] for c in CITIES], "o": [o["en"] for o in OBJECTS]}


def build_qqp(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 2)

    def make(i):
        templates, fields = rng.choice(QQP_GROUPS)
        values = {f: rng.choice(_QQP_POOLS[f]) for f in fields}
        if "c2" in values:
            while values["c2"] == values["c"]:
                values["c2"] = rng.choice(_QQP_POOLS["c2"])
        t1, t2 = rng.sample(templates, 2)
        q1 = t1.format(**values)
        if labels[i] == 1:  # same content, other wording
            q2 = t2.format(**values)
        else:  # one content word replaced
            changed = dict(values)
            f = rng.choice(fields)
            changed[f] = rng.choice([x for x in _QQP_POOLS[f] if x not in values.values()])
            q2 = rng.choice([t1, t2]).format(**changed)
        return {"question1": q1, "question2": q2, "label": labels[i], "idx": i}

    return unique_rows(rng, n, make, lambda r: (r["question1"], r["question2"]))


# PAWS-X: (order A, order B) per language; fields p1/p2/p (people), c/c1/c2 (cities), y, n, o
PAWS_T = {
    "en": {
        "visit": ("{p1} and {p2} visited {c} in {y}.", "In {y}, {p1} and {p2} visited {c}."),
        "move": ("{p} moved from {c1} to {c2} in {y}.", "In {y}, {p} moved from {c1} to {c2}."),
        "buy": ("{p} bought {n} {o} in {c}.", "In {c}, {p} bought {n} {o}."),
    },
    "de": {
        "visit": ("{p1} und {p2} besuchten {c} im Jahr {y}.", "Im Jahr {y} besuchten {p1} und {p2} {c}."),
        "move": ("{p} zog {y} von {c1} nach {c2}.", "{y} zog {p} von {c1} nach {c2}."),
        "buy": ("{p} kaufte in {c} {n} {o}.", "In {c} kaufte {p} {n} {o}."),
    },
    "ja": {
        "visit": ("{p1}と{p2}は{y}年に{c}を訪れた。", "{y}年、{p1}と{p2}は{c}を訪れた。"),
        "move": ("{p}は{y}年に{c1}から{c2}へ引っ越した。", "{y}年、{p}は{c1}から{c2}へ引っ越した。"),
        "buy": ("{p}は{c}で{o}を{n}{cl}買った。", "{c}で、{p}は{o}を{n}{cl}買った。"),
    },
    "ko": {
        "visit": ("{p1}{p1_wa} {p2}{p2_eun} {y}년에 {c}{c_reul} 방문했다.",
                  "{y}년에 {p1}{p1_wa} {p2}{p2_eun} {c}{c_reul} 방문했다."),
        "move": ("{p}{p_eun} {y}년에 {c1}에서 {c2}{c2_ro} 이사했다.",
                 "{y}년에 {p}{p_eun} {c1}에서 {c2}{c2_ro} 이사했다."),
        "buy": ("{p}{p_eun} {c}에서 {o} {n}{cl}{cl_eul} 샀다.", "{c}에서 {p}{p_eun} {o} {n}{cl}{cl_eul} 샀다."),
    },
    "zh": {
        "visit": ("{p1}和{p2}在{y}年访问了{c}。", "{y}年，{p1}和{p2}访问了{c}。"),
        "move": ("{p}在{y}年从{c1}搬到了{c2}。", "{y}年，{p}从{c1}搬到了{c2}。"),
        "buy": ("{p}在{c}买了{n}{cl}{o}。", "在{c}，{p}买了{n}{cl}{o}。"),
    },
}
PAWS_FIELDS = {"visit": ("p1", "p2", "c", "y"), "move": ("p", "c1", "c2", "y"), "buy": ("p", "c", "n", "o")}
_PAWS_KIND = {"p1": "p", "p2": "p", "p": "p", "c": "c", "c1": "c", "c2": "c", "y": "y", "n": "n", "o": "o"}


def _paws_values(lang: str, ids: dict) -> dict:
    v = {}
    for field, idx in ids.items():
        kind = _PAWS_KIND[field]
        if kind == "p":
            v[field] = PEOPLE[idx][lang]
        elif kind == "c":
            v[field] = CITIES[idx][lang]
        elif kind in ("y", "n"):
            v[field] = str(idx)
    if "o" in ids:
        obj = OBJECTS[ids["o"]][lang]
        if lang == "zh":
            v["cl"], v["o"] = obj
        elif lang in ("ja", "ko"):
            v["o"], v["cl"] = obj
        else:
            v["o"] = obj
    if lang == "ko":
        for f in ("p", "p1", "p2", "c", "c2"):
            if f in v:
                v[f + "_wa"] = ko_josa(v[f], "과", "와")
                v[f + "_eun"] = ko_josa(v[f], "은", "는")
                v[f + "_reul"] = ko_josa(v[f], "을", "를")
                v[f + "_ro"] = ko_ro(v[f])
        if "cl" in v:
            v["cl_eul"] = ko_josa(v["cl"], "을", "를")
    return v


def _paws_draw(rng: random.Random, kind: str, exclude: set) -> int:
    pool = {"p": range(len(PEOPLE)), "c": range(len(CITIES)), "y": YEARS, "n": NUMBERS,
            "o": range(len(OBJECTS))}[kind]
    return rng.choice([x for x in pool if x not in exclude])


def build_pawsx(split: str, lang: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 2)

    def make(i):
        shape = rng.choice(sorted(PAWS_FIELDS))
        ids: dict = {}
        for field in PAWS_FIELDS[shape]:
            kind = _PAWS_KIND[field]
            same_kind = {ids[f] for f in ids if _PAWS_KIND[f] == kind}
            ids[field] = _paws_draw(rng, kind, same_kind)
        first, second = PAWS_T[lang][shape]
        if rng.random() < 0.5:
            first, second = second, first
        s1 = first.format(**_paws_values(lang, ids))
        if labels[i] == 1:  # same words, other order
            s2 = second.format(**_paws_values(lang, ids))
        else:  # one content word replaced
            changed = dict(ids)
            field = rng.choice(PAWS_FIELDS[shape])
            kind = _PAWS_KIND[field]
            changed[field] = _paws_draw(rng, kind, {ids[f] for f in ids if _PAWS_KIND[f] == kind})
            s2 = rng.choice([first, second]).format(**_paws_values(lang, changed))
        return {"sentence1": s1, "sentence2": s2, "label": str(labels[i])}

    return unique_rows(rng, n, make, lambda r: (r["sentence1"], r["sentence2"]))


# ---------------------------------------------------------------------------------------
# Span QA: SQuAD v1.1 / v2.0, XQuAD, MLQA, TyDiQA-GoldP
# ---------------------------------------------------------------------------------------


def _answer_alternatives(lang: str, context: str, text: str, start: int, values: dict, field: str) -> list:
    """Other gold spans a second annotator might mark (English only, as in SQuAD dev)."""
    alts = []
    if lang != "en":
        return alts
    if text.startswith("the "):
        alts.append((text[4:], start + 4))
    if context[max(0, start - 3):start] == "in ":
        alts.append(("in " + text, start - 3))
    if field == "n":
        longer = text + " " + values["o"]
        if context[start:start + len(longer)] == longer:
            alts.append((longer, start))
    return alts


def qa_row(rng: random.Random, lang: str, row_id: str, multi_answer: bool = False,
           unanswerable: bool = False) -> dict:
    types = LANG_EVENT_TYPES[lang]
    target = sample_event(rng, rng.choice(types))
    used = {k: {target[k]} for k in ("p", "c", "y", "n", "o", "org")}
    events = [target]
    for _ in range(rng.randint(1, 2)):  # distractor events share no value with the others
        ev = sample_event(rng, rng.choice(types), avoid=used)
        for k in used:
            used[k].add(ev[k])
        events.append(ev)
    order = list(range(len(events)))
    rng.shuffle(order)
    pieces = [(i, render(lang, events[i])) for i in order]
    if rng.random() < 0.5:  # a city fact, about a city no event mentions
        fact_ev = sample_event(rng, "travel", avoid={"c": used["c"]})
        pieces.insert(rng.randint(0, len(pieces)), (-1, render(lang, fact_ev, "fact")))
    joiner = SENT_JOIN.get(lang, " ")
    context, target_at = "", None
    for k, (idx, (text, spans, values)) in enumerate(pieces):
        if k:
            context += joiner
        if idx == 0:
            target_at, target_spans, target_values = len(context), spans, values
        context += text
    assert target_at is not None
    questions = QUESTIONS[lang][target["type"]]
    if unanswerable:  # a "who" question would not change with the person: ask about the rest
        questions = [q for q in questions if q[1] != "p"]
    template, field = rng.choice(questions)
    title = target_values["p"] if field != "p" else slots(lang, events[-1])["p"]
    if unanswerable:
        # ask the same kind of question about a person the context never mentions
        q_ev = dict(target, p=rng.choice([p for p in range(len(PEOPLE)) if p not in used["p"]]))
        question, _ = fill(template, slots(lang, q_ev))
        return {"id": row_id, "title": title, "context": context, "question": question,
                "answers": {"text": [], "answer_start": []}}
    question, _ = fill(template, target_values)
    text = target_values[field]
    start = target_at + target_spans[field][0]
    answers = [(text, start)]
    if multi_answer:
        alts = _answer_alternatives(lang, context, text, start, target_values, field)
        if alts and rng.random() < 0.7:
            answers.append(rng.choice(alts))
        if rng.random() < 0.4:
            answers.insert(1, (text, start))  # annotators often agree exactly
    for a_text, a_start in answers:
        assert context[a_start:a_start + len(a_text)] == a_text, (context, a_text, a_start)
    return {"id": row_id, "title": title, "context": context, "question": question,
            "answers": {"text": [a for a, _ in answers], "answer_start": [s for _, s in answers]}}


def build_squad(task: str, split: str, lang: str, n: int, path: str, *, multi_answer: bool = False,
                unanswerable_every: int = 0, id_style: str = "hex") -> list[dict]:
    rng = rng_for(path)
    rows = []
    for i in range(n):
        if id_style == "tydiqa":
            digits = int(stable_hex(task, split, lang, i, n=15), 16)
            row_id = f"{TYDI_NAMES[lang]}-{digits}-{i % 3}"
        else:
            row_id = stable_hex(task, split, lang, i)
        unanswerable = bool(unanswerable_every) and i % unanswerable_every == unanswerable_every - 1
        rows.append(qa_row(rng, lang, row_id, multi_answer=multi_answer, unanswerable=unanswerable))
    return rows


TYDI_NAMES = {"en": "english", "ar": "arabic", "ru": "russian", "bn": "bengali", "te": "telugu"}

# ---------------------------------------------------------------------------------------
# Multiple choice: HellaSwag, CosmosQA, CommonsenseQA
# ---------------------------------------------------------------------------------------

# (activity label, keyword, contexts, right endings); every context and ending names the keyword
HELLASWAG_ACTIVITIES = [
    ("Cooking eggs", "pan",
     ["A {who} is standing in a kitchen holding a frying pan.", "A {who} heats a pan on the stove."],
     ["cracks two eggs into the pan and stirs them.", "pours a little oil into the pan and fries an egg."]),
    ("Gardening", "shovel",
     ["A {who} walks into a garden carrying a shovel.", "A {who} leans a shovel against a garden wall."],
     ["digs a hole with the shovel and plants a small tree.", "pushes the shovel into the soil and turns it over."]),
    ("Painting fence", "brush",
     ["A {who} dips a wide brush into a can of white paint.", "A {who} stands by a wooden fence holding a brush."],
     ["moves the brush along the fence in long strokes.", "paints the fence with the brush until it is white."]),
    ("Swimming", "pool",
     ["A {who} stands at the edge of a swimming pool wearing goggles.", "A {who} climbs down a ladder into a pool."],
     ["dives into the pool and swims to the other side.", "swims several laps across the pool."]),
    ("Washing car", "sponge",
     ["A {who} fills a bucket with soapy water and picks up a sponge.", "A {who} walks around a dusty car holding a sponge."],
     ["scrubs the hood of the car with the wet sponge.", "wipes the windows with the sponge and rinses them."]),
    ("Playing guitar", "guitar",
     ["A {who} sits on a stool holding an acoustic guitar.", "A {who} tunes a guitar in front of a microphone."],
     ["strums the guitar and sings a slow song.", "plays a short melody on the guitar."]),
    ("Skateboarding", "skateboard",
     ["A {who} carries a skateboard to the top of a ramp.", "A {who} puts one foot on a skateboard in an empty parking lot."],
     ["rides the skateboard down the ramp.", "pushes off and does a trick on the skateboard."]),
    ("Knitting", "yarn",
     ["A {who} holds two needles and a ball of red yarn.", "A {who} sits on a sofa pulling yarn from a basket."],
     ["loops the yarn around the needles to start a scarf.", "knits the yarn into a small hat."]),
    ("Walking the dog", "dog",
     ["A {who} clips a leash onto a small brown dog.", "A {who} opens the front door and a dog runs out."],
     ["walks the dog slowly along the sidewalk.", "throws a ball and the dog chases it."]),
    ("Baking bread", "dough",
     ["A {who} sprinkles flour on a table and places a lump of dough on it.", "A {who} mixes flour and water into a soft dough."],
     ["kneads the dough and puts it into the oven.", "shapes the dough into a round loaf."]),
    ("Fishing", "rod",
     ["A {who} sits in a small boat holding a fishing rod.", "A {who} stands on a pier and checks the line of a rod."],
     ["casts the rod over the water and waits.", "reels in the rod and pulls out a fish."]),
    ("Brushing teeth", "toothbrush",
     ["A {who} squeezes toothpaste onto a toothbrush at the sink.", "A {who} picks up a blue toothbrush in the bathroom."],
     ["brushes their teeth with the toothbrush for two minutes.", "rinses the toothbrush under the tap."]),
]
HS_WHO = ["man", "woman", "boy", "girl"]


def build_hellaswag(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    rows = []
    for i in range(n):
        a = rng.randrange(len(HELLASWAG_ACTIVITIES))
        label_text, _kw, contexts, endings = HELLASWAG_ACTIVITIES[a]
        who = rng.choice(HS_WHO)
        ctx_a = rng.choice(contexts).format(who=who)
        ctx_b = f"the {who}"
        right = rng.choice(endings)
        others = rng.sample([j for j in range(len(HELLASWAG_ACTIVITIES)) if j != a], 3)
        wrong = [rng.choice(HELLASWAG_ACTIVITIES[j][3]) for j in others]
        label = rng.randrange(4)
        choices = wrong[:label] + [right] + wrong[label:]
        source = (f"activitynet~v_{stable_hex('hs', split, i, n=11)}" if i % 2 == 0
                  else f"wikihow~{int(stable_hex('hs', split, i, n=6), 16) % 100000}")
        rows.append({
            "ind": 1000 * (1 if split == "train" else 2) + i,
            "activity_label": label_text,
            "ctx_a": ctx_a,
            "ctx_b": ctx_b,
            "ctx": ctx_a + " " + ctx_b,
            "endings": choices,
            "source_id": source,
            "split": "train" if split == "train" else "val",
            "split_type": "indomain" if split == "train" or i % 2 == 0 else "zeroshot",
            "label": str(label),
        })
    return rows


# (context, question, right answer); {P} person, {he}/{his} pronouns; the answer repeats a
# keyword of the context
COSMOS_SCENES = [
    ("{P} forgot {his} umbrella at home this morning. By noon it was raining hard, and {he} got wet "
     "on the way to the office.", "Why did {P} get wet?", "Because {he} left the umbrella at home."),
    ("{P} stayed up late studying for the math exam. The next morning {he} felt tired but ready.",
     "What may be the reason {P} felt tired?", "{He_cap} studied for the exam until late at night."),
    ("{P}'s dog was sick all weekend, so {he} took it to the vet after lunch on Monday.",
     "Where did {P} go after lunch on Monday?", "To the vet with the sick dog."),
    ("{P} saved money for six months because {he} wanted a new bike for the summer.",
     "Why did {P} save money?", "To buy a new bike."),
    ("{P} left the cake in the oven for too long, and the kitchen filled with smoke.",
     "What probably happened to the cake?", "The cake burned in the oven."),
    ("{P} missed the early bus and arrived twenty minutes late to the meeting.",
     "Why was {P} late to the meeting?", "{He_cap} missed the bus."),
    ("{P} planted tomatoes in the garden in spring and watered them every evening.",
     "What did {P} do every evening?", "{He_cap} watered the tomatoes in the garden."),
    ("{P} moved to a new city for work and did not know anyone there at first.",
     "How might {P} have felt after moving?", "Lonely in the new city at first."),
    ("{P} looked everywhere for {his} phone and finally found it under the sofa.",
     "Where was {P}'s phone?", "Under the sofa."),
    ("The concert was very loud, and {P} stood right next to the speakers all night.",
     "Why did {P} have a headache after the concert?", "The speakers at the concert were loud."),
    ("{P} practiced the piano every day for a month before the school recital.",
     "What did {P} do before the recital?", "{He_cap} practiced the piano every day."),
    ("{P} burned {his} hand on the hot stove while making soup for dinner.",
     "How did {P} get hurt?", "{He_cap} touched the hot stove while cooking soup."),
]
COSMOS_NONE = "None of the above choices ."


def _pronouns(person: dict) -> dict:
    fem = person["g"] == "f"
    return {"P": person["en"], "he": "she" if fem else "he", "He_cap": "She" if fem else "He",
            "his": "her" if fem else "his"}


def build_cosmosqa(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    rows = []
    for i in range(n):
        s = rng.randrange(len(COSMOS_SCENES))
        person = PEOPLE[rng.randrange(len(PEOPLE))]
        vals = _pronouns(person)
        context, question, right = (t.format(**vals) for t in COSMOS_SCENES[s])
        others = rng.sample([j for j in range(len(COSMOS_SCENES)) if j != s], 3)
        wrong = [COSMOS_SCENES[j][2].format(**vals) for j in others]
        if rng.random() < 0.3:
            wrong[2] = COSMOS_NONE
        label = rng.randrange(4)
        choices = wrong[:label] + [right] + wrong[label:]
        row = {"id": f"{stable_hex('cosmos', split, i, n=30).upper()}##{i}", "context": context,
               "question": question}
        row.update({f"answer{k}": choices[k] for k in range(4)})
        row["label"] = label
        rows.append(row)
    return rows


# concept -> questions about it, and its fixed associate (the right answer)
CSQA_CONCEPTS = [
    ("book", ["Where would you borrow a book to read?", "Where can you find many books on shelves?"], "library"),
    ("bread", ["Where would you buy fresh bread in the morning?", "Where is bread baked and sold?"], "bakery"),
    ("fish", ["Where do most fish live?", "Where would a fish swim far from land?"], "ocean"),
    ("car", ["Where do people park a car at home?", "Where would you keep a car at night?"], "garage"),
    ("doctor", ["Where does a doctor usually work?", "Where would you see a doctor after an accident?"], "hospital"),
    ("money", ["Where do people keep money safe?", "Where would you go to save money?"], "bank"),
    ("student", ["Where does a student learn every day?", "Where would a student meet a teacher?"], "school"),
    ("plane", ["Where does a plane land?", "Where would you board a plane?"], "airport"),
    ("cow", ["Where does a cow live?", "Where would you see a cow being milked?"], "farm"),
    ("painting", ["Where can you see a famous painting?", "Where would a painting hang for visitors?"], "museum"),
    ("movie", ["Where do people watch a new movie?", "Where would you buy a ticket for a movie?"], "cinema"),
    ("tent", ["Where would you sleep in a tent?", "Where would you put up a tent for the night?"], "campsite"),
]


def build_commonsenseqa(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    rows = []
    keys = ["A", "B", "C", "D", "E"]
    for i in range(n):
        c = rng.randrange(len(CSQA_CONCEPTS))
        concept, questions, right = CSQA_CONCEPTS[c]
        others = rng.sample([j for j in range(len(CSQA_CONCEPTS)) if j != c], 4)
        wrong = [CSQA_CONCEPTS[j][2] for j in others]
        label = rng.randrange(5)
        texts = wrong[:label] + [right] + wrong[label:]
        rows.append({"id": stable_hex("csqa", split, i, n=32), "question": rng.choice(questions),
                     "question_concept": concept, "choices": {"label": keys, "text": texts},
                     "answerKey": keys[label]})
    return rows


# ---------------------------------------------------------------------------------------
# Tagging: CCG supertags (toy, our own), UD POS, PAN-X NER
# ---------------------------------------------------------------------------------------

CCG_LEX = {
    "NAME": ["Anna", "Omar", "Ivan", "Maria", "Ravi", "Leila", "David", "Lina"],
    "CITY": ["Paris", "Cairo", "Delhi", "Moscow", "Berlin", "Tokyo"],
    "N": ["dog", "book", "letter", "car", "garden", "river", "song", "house"],
    "NA": ["dog", "cat", "man", "woman", "child", "teacher"],  # nouns that can laugh or wait
    "ADJ": ["red", "old", "small", "new", "quiet"],
    "TV": ["saw", "read", "found", "liked", "painted", "bought"],
    "IV": ["slept", "laughed", "smiled", "waited", "arrived"],
    "IVB": ["sleep", "laugh", "smile", "wait"],
    "DT": ["the", "a", "this"],
    "YEAR": [str(y) for y in (1999, 2004, 2010, 2015, 2020)],
}
CCG_CAT = {
    "NAME": "NP", "CITY": "NP", "N": "N", "ADJ": "N/N", "TV": "(S[dcl]\\NP)/NP", "IV": "S[dcl]\\NP",
    "IVB": "S[b]\\NP", "DT": "NP/N", "YEAR": "N", "NA": "N",
}
# a template is a list of (word class or literal word, supertag or None for the class's tag)
CCG_TEMPLATES = [
    [("NAME", None), ("TV", None), ("DT", None), ("N", None), (".", ".")],
    [("DT", None), ("ADJ", None), ("NA", None), ("IV", None), (".", ".")],
    [("NAME", None), ("IV", None), (".", ".")],
    [("NAME", None), ("gave", "((S[dcl]\\NP)/NP)/NP"), ("NAME", None), ("DT", None), ("N", None), (".", ".")],
    [("NAME", None), ("walked", "S[dcl]\\NP"), ("to", "((S\\NP)\\(S\\NP))/NP"), ("CITY", None), (".", ".")],
    [("In", "(S/S)/NP"), ("YEAR", None), (",", ","), ("NAME", None), ("IV", None), (".", ".")],
    [("NAME", None), ("says", "(S[dcl]\\NP)/S[em]"), ("that", "S[em]/S[dcl]"), ("NAME", None), ("IV", None),
     (".", ".")],
    [("DT", None), ("N", None), ("is", "(S[dcl]\\NP)/(S[adj]\\NP)"), ("ADJ", "S[adj]\\NP"), (".", ".")],
    [("NAME", None), ("did", "(S[dcl]\\NP)/(S[b]\\NP)"), ("not", "(S\\NP)\\(S\\NP)"), ("IVB", None),
     (".", ".")],
    [("NAME", None), ("and", "conj"), ("NAME", None), ("IV", None), (".", ".")],
    [("NAME", None), ("TV", None), ("DT", None), ("ADJ", None), ("N", None), ("in", "((S\\NP)\\(S\\NP))/NP"),
     ("CITY", None), (".", ".")],
]


def build_ccg(split: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)

    def make(i):
        template = CCG_TEMPLATES[i % len(CCG_TEMPLATES)] if i < len(CCG_TEMPLATES) else rng.choice(CCG_TEMPLATES)
        tokens, tags, used = [], [], set()
        for item, tag in template:
            if item in CCG_LEX:
                word = rng.choice([w for w in CCG_LEX[item] if w not in used])
                used.add(word)
                tokens.append(word)
                tags.append(tag or CCG_CAT[item])
            else:
                tokens.append(item)
                tags.append(tag)
        if tokens[0][0].islower():
            tokens[0] = tokens[0][0].upper() + tokens[0][1:]
        return {"tokens": tokens, "tags": tags}

    return unique_rows(rng, n, make, lambda r: tuple(r["tokens"]))


UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")

# "token/TAG" items separated by spaces; {fields} come from pos_values()
UDPOS_T = {
    "en": [
        "{p}/PROPN bought/VERB {n}/NUM {adj}/ADJ {o}/NOUN in/ADP {c}/PROPN ./PUNCT",
        "The/DET {adj}/ADJ {noun}/NOUN is/AUX very/ADV {adj2}/ADJ ./PUNCT",
        "{pron}/PRON did/AUX not/PART see/VERB the/DET {noun}/NOUN ./PUNCT",
        "{p}/PROPN and/CCONJ {p2}/PROPN traveled/VERB to/ADP {c}/PROPN in/ADP {y}/NUM ./PUNCT",
        "We/PRON will/AUX read/VERB this/DET {noun}/NOUN because/SCONJ it/PRON is/AUX {adj}/ADJ ./PUNCT",
        "Oh/INTJ ,/PUNCT {p}/PROPN works/VERB at/ADP the/DET bank/NOUN ./PUNCT",
        "Prices/NOUN rose/VERB by/ADP {n}/NUM %/SYM in/ADP {y}/NUM ./PUNCT",
    ],
    "ru": [
        "{p}/PROPN {bought}/VERB {n}/NUM {o_gen}/NOUN в/ADP {c_loc}/PROPN ./PUNCT",
        "{ru_det}/DET {ru_noun}/NOUN очень/ADV {ru_adj}/ADJ ./PUNCT",
        "{ru_pron}/PRON не/PART {ru_saw}/VERB {ru_acc}/NOUN ./PUNCT",
        "{p}/PROPN и/CCONJ {p2}/PROPN поехали/VERB в/ADP {c_acc}/PROPN в/ADP {y}/NUM году/NOUN ./PUNCT",
        "Мы/PRON будем/AUX читать/VERB эту/DET книгу/NOUN ,/PUNCT потому/ADV что/SCONJ она/PRON {ru_adj_f}/ADJ ./PUNCT",
        "{p}/PROPN работает/VERB в/ADP банке/NOUN ./PUNCT",
        "Цены/NOUN выросли/VERB на/ADP {n}/NUM %/SYM ./PUNCT",
    ],
    "ar": [
        "{bought}/VERB {p}/PROPN {n}/NUM {o}/NOUN في/ADP {c}/PROPN ./PUNCT",
        "{ar_det}/DET {ar_noun}/NOUN {ar_adj}/ADJ جدا/ADV ./PUNCT",
        "لم/PART {ar_neg_go}/VERB {p}/PROPN إلى/ADP {c}/PROPN ./PUNCT",
        "{traveled}/VERB {p}/PROPN و/CCONJ {p2}/PROPN إلى/ADP {c}/PROPN في/ADP عام/NOUN {y}/NUM ./PUNCT",
        "{works}/VERB {p}/PROPN في/ADP البنك/NOUN ./PUNCT",
        "قرأ/VERB الطالب/NOUN الكتاب/NOUN لأن/SCONJ الكتاب/NOUN {ar_adj_m}/ADJ ./PUNCT",
        "ارتفعت/VERB الأسعار/NOUN {n}/NUM %/SYM ./PUNCT",
    ],
    "hi": [
        "{p}/PROPN ने/ADP {c}/PROPN में/ADP {n}/NUM {o}/NOUN {bought}/VERB ।/PUNCT",
        "{hi_det}/DET {hi_noun}/NOUN बहुत/ADV {hi_adj}/ADJ है/AUX ।/PUNCT",
        "{p}/PROPN {c}/PROPN नहीं/PART {went}/VERB ।/PUNCT",
        "{p}/PROPN और/CCONJ {p2}/PROPN {y}/NUM में/ADP {c}/PROPN गए/VERB ।/PUNCT",
        "{p}/PROPN बैंक/NOUN में/ADP काम/NOUN {does}/VERB है/AUX ।/PUNCT",
        "हम/PRON यह/DET किताब/NOUN पढ़ेंगे/VERB क्योंकि/SCONJ यह/PRON {hi_adj_f}/ADJ है/AUX ।/PUNCT",
        "अरे/INTJ ,/PUNCT {p}/PROPN आ/VERB {went}/AUX ।/PUNCT",
    ],
    "zh": [
        "{p}/PROPN 在/ADP {c}/PROPN 买/VERB 了/AUX {n}/NUM {m}/NOUN {o}/NOUN 。/PUNCT",
        "这/DET {zh_cl}/NOUN {zh_noun}/NOUN 很/ADV {zh_adj}/ADJ 。/PUNCT",
        "{p}/PROPN 没有/ADV 去/VERB {c}/PROPN 。/PUNCT",
        "{p}/PROPN 和/CCONJ {p2}/PROPN {y}/NUM 年/NOUN 去/VERB 了/AUX {c}/PROPN 。/PUNCT",
        "{p}/PROPN 在/ADP 银行/NOUN 工作/VERB 。/PUNCT",
        "因为/SCONJ 天气/NOUN 很/ADV 好/ADJ ，/PUNCT 我们/PRON 去/VERB 了/AUX 公园/NOUN 。/PUNCT",
        "价格/NOUN 上涨/VERB 了/AUX {n}/NUM %/SYM 。/PUNCT",
    ],
}

POS_FILLERS = {
    "en": dict(adj=["red", "old", "new", "small", "big"], adj2=["quiet", "long", "cold", "clean"],
               noun=["river", "house", "car", "garden", "dog", "book"], pron=["She", "He", "They"]),
    "ru": dict(ru_np=[("Этот", "дом", "старый"), ("Эта", "книга", "новая"), ("Это", "окно", "большое"),
                      ("Этот", "город", "красивый")],
               ru_saw=[("Она", "видела"), ("Он", "видел"), ("Они", "видели")],
               ru_acc=["реку", "дом", "машину", "сад", "собаку"], ru_adj_f=["интересная", "новая", "короткая"]),
    "ar": dict(ar_np=[("هذا", "البيت", "كبير"), ("هذه", "المدينة", "جميلة"), ("هذا", "الكتاب", "جديد"),
                      ("هذه", "السيارة", "سريعة")],
               ar_adj_m=["مفيد", "جديد", "قصير"]),
    "hi": dict(hi_np=[("यह", "घर", "बड़ा"), ("यह", "किताब", "नई"), ("यह", "शहर", "सुंदर"), ("यह", "कार", "तेज")],
               hi_adj_f=["रोचक", "नई", "छोटी"]),
    "zh": dict(zh_np=[("座", "城市", "大"), ("本", "书", "新"), ("辆", "车", "快"), ("个", "房子", "旧")]),
}


def pos_values(rng: random.Random, lang: str) -> dict:
    ev = sample_event(rng, "buy")
    v = slots(lang, ev)
    v["p2"] = PEOPLE[rng.choice([i for i in range(len(PEOPLE)) if i != ev["p"]])][lang]
    f = POS_FILLERS[lang]
    if lang == "en":
        v.update(adj=rng.choice(f["adj"]), adj2=rng.choice(f["adj2"]), noun=rng.choice(f["noun"]),
                 pron=rng.choice(f["pron"]))
    elif lang == "ru":
        v["ru_det"], v["ru_noun"], v["ru_adj"] = rng.choice(f["ru_np"])
        v["ru_pron"], v["ru_saw"] = rng.choice(f["ru_saw"])
        v.update(ru_acc=rng.choice(f["ru_acc"]), ru_adj_f=rng.choice(f["ru_adj_f"]))
    elif lang == "ar":
        v["ar_det"], v["ar_noun"], v["ar_adj"] = rng.choice(f["ar_np"])
        v["ar_neg_go"] = "تذهب" if PEOPLE[ev["p"]]["g"] == "f" else "يذهب"
        v["ar_adj_m"] = rng.choice(f["ar_adj_m"])
    elif lang == "hi":
        v["hi_det"], v["hi_noun"], v["hi_adj"] = rng.choice(f["hi_np"])
        v["hi_adj_f"] = rng.choice(f["hi_adj_f"])
    elif lang == "zh":
        v["zh_cl"], v["zh_noun"], v["zh_adj"] = rng.choice(f["zh_np"])
    return v


def build_udpos(split: str, lang: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    templates = UDPOS_T[lang]

    def make(i):
        template = templates[i % len(templates)] if i < len(templates) else rng.choice(templates)
        filled = template.format(**pos_values(rng, lang))
        tokens, tags = [], []
        for item in filled.split(" "):
            token, tag = item.rsplit("/", 1)
            assert token and tag in UPOS, (lang, item)
            tokens.append(token)
            tags.append(tag)
        return {"tokens": tokens, "pos_tags": tags}

    return unique_rows(rng, n, make, lambda r: tuple(r["tokens"]))


# PAN-X: <PER>, <PER2>, <ORG>, <LOC> expand to entity tokens; {fields} agree with the people
PANX_T = {
    "en": ["<PER> works at the <ORG> in <LOC> .", "<PER> was born in <LOC> .",
           "The <ORG> opened a new office in <LOC> .", "<PER> met <PER2> in <LOC> .",
           "<LOC> is a large city .", "<PER> is a writer from <LOC> .", "{He} studied at the <ORG> ."],
    "ru": ["<PER> работает в <ORG> .", "<PER> {born} в <LOC> .", "В <LOC> находится <ORGN> .",
           "<PER> и <PER2> встретились в <LOC> .", "<LOCN> — большой город ."],
    "ar": ["{works} <PER> في <ORG> .", "{born} <PER> في <LOC> .", "{located} <ORG> في <LOC> .",
           "التقى <PER> و <PER2> في <LOC> .", "<LOC> مدينة كبيرة ."],
    "hi": ["<PER> <ORG> में काम {does} है ।", "<PER> का जन्म <LOC> में हुआ था ।", "<ORG> <LOC> में स्थित है ।",
           "<PER> और <PER2> <LOC> में मिले ।", "<LOC> एक बड़ा शहर है ।"],
    "zh": ["<PER> 在 <ORG> 工作 。", "<PER> 出生 于 <LOC> 。", "<ORG> 位于 <LOC> 。",
           "<PER> 和 <PER2> 在 <LOC> 见面 。", "<LOC> 是 一座 大 城市 。"],
}
# ORG token lists; ru: (locative, nominative); ar: (tokens, gender of يقع/تقع)
PANX_ORGS = {
    "en": [["National", "Museum"], ["City", "Hospital"], ["Northwind", "Bank"], ["Eastern", "University"],
           ["Central", "Library"]],
    "ru": [(["Национальном", "музее"], ["Национальный", "музей"]),
           (["Городской", "больнице"], ["Городская", "больница"]),
           (["банке", "Нортвинд"], ["банк", "Нортвинд"]),
           (["Восточном", "университете"], ["Восточный", "университет"]),
           (["Центральной", "библиотеке"], ["Центральная", "библиотека"])],
    "ar": [(["المتحف", "الوطني"], "m"), (["مستشفى", "المدينة"], "m"), (["بنك", "نورثويند"], "m"),
           (["الجامعة", "الشرقية"], "f"), (["المكتبة", "المركزية"], "f")],
    "hi": [["राष्ट्रीय", "संग्रहालय"], ["सिटी", "अस्पताल"], ["नॉर्थविंड", "बैंक"], ["पूर्वी", "विश्वविद्यालय"],
           ["केंद्रीय", "पुस्तकालय"]],
    "zh": [["国家", "博物馆"], ["市立", "医院"], ["北风", "银行"], ["东方", "大学"], ["中央", "图书馆"]],
}
# extra multi-word places; ru: (locative, nominative)
PANX_EXTRA_LOCS = {
    "en": [["New", "York"], ["Buenos", "Aires"], ["Rio", "de", "Janeiro"]],
    "ru": [(["Нью-Йорке"], ["Нью-Йорк"]), (["Буэнос-Айресе"], ["Буэнос-Айрес"]),
           (["Рио-де-Жанейро"], ["Рио-де-Жанейро"])],
    "ar": [["نيويورك"], ["بوينس", "آيرس"], ["ريو", "دي", "جانيرو"]],
    "hi": [["न्यूयॉर्क"], ["ब्यूनस", "आयर्स"], ["रियो", "डी", "जनेरियो"]],
    "zh": [["纽约"], ["布宜诺斯艾利斯"], ["里约热内卢"]],
}


def _panx_locs(lang: str) -> list:
    """Each place as (tokens in the template's case, tokens in the nominative)."""
    if lang == "ru":
        out = [([c["ru"][1]], [c["ru"][0]]) for c in CITIES]
        return out + list(PANX_EXTRA_LOCS["ru"])
    out = [([c[lang]], [c[lang]]) for c in CITIES]
    return out + [(toks, toks) for toks in PANX_EXTRA_LOCS[lang]]


def _entity(tokens: list[str], kind: str) -> list[tuple[str, str]]:
    return [(t, ("B-" if k == 0 else "I-") + kind) for k, t in enumerate(tokens)]


def build_panx(split: str, lang: str, n: int, path: str) -> list[dict]:
    rng = rng_for(path)
    templates = PANX_T[lang]
    locs = _panx_locs(lang)

    def person_tokens(idx: int) -> list[str]:
        name = PEOPLE[idx][lang]
        if rng.random() < 0.6:
            surname = rng.choice(SURNAMES[lang])
            return [f"{name}·{surname}"] if lang == "zh" else [name, surname]
        return [name]

    def make(i):
        template = templates[i % len(templates)] if i < len(templates) else rng.choice(templates)
        p1, p2 = rng.sample(range(len(PEOPLE)), 2)
        fem = PEOPLE[p1]["g"] == "f"
        org = rng.choice(PANX_ORGS[lang])
        loc, loc_nom = rng.choice(locs)
        fields = {"He": "She" if fem else "He", "born": "родилась" if fem else "родился",
                  "works": "تعمل" if fem else "يعمل", "does": "करती" if fem else "करता"}
        if lang == "ar":
            org, org_g = org
            fields["born"] = "ولدت" if fem else "ولد"
            fields["located"] = "تقع" if org_g == "f" else "يقع"
        org_loc, org_nom = org if lang == "ru" else (org, org)
        expand = {"<PER>": _entity(person_tokens(p1), "PER"), "<PER2>": _entity(person_tokens(p2), "PER"),
                  "<ORG>": _entity(org_loc, "ORG"), "<ORGN>": _entity(org_nom, "ORG"),
                  "<LOC>": _entity(loc, "LOC"), "<LOCN>": _entity(loc_nom, "LOC")}
        pairs: list[tuple[str, str]] = []
        for item in template.format(**fields).split(" "):
            pairs.extend(expand.get(item, [(item, "O")]))
        tokens = [t for t, _ in pairs]
        return {"tokens": tokens, "ner_tags": [g for _, g in pairs], "langs": [lang] * len(tokens)}

    return unique_rows(rng, n, make, lambda r: tuple(r["tokens"]))


# ---------------------------------------------------------------------------------------
# Retrieval: BUCC, Tatoeba (a sentence and its English translation)
# ---------------------------------------------------------------------------------------


def translation_pair(rng: random.Random, lang: str, forms: tuple[str, ...]) -> tuple[str, str, tuple]:
    form = rng.choice(forms)
    ev = sample_event(rng, rng.choice(EVENT_TYPES))
    src, _, _ = render(lang, ev, form)
    trg, _, _ = render("en", ev, form)
    meaning = (form,) + ((ev["c"], ev["adj"]) if form == "fact" else tuple(sorted(ev.items())))
    return src, trg, meaning


def _translation_forms(lang: str) -> tuple[str, ...]:
    return ("full", "full", "fact") if lang == "fr" else ("full", "full", "neg", "fact")


def build_bucc(split: str, lang: str, path: str, n_pairs: int = 24, n_src_only: int = 4,
               n_trg_only: int = 4) -> list[dict]:
    rng = rng_for(path)
    forms = _translation_forms(lang)
    seen_meaning, seen_src, seen_trg = set(), set(), set()
    drawn = []
    while len(drawn) < n_pairs + n_src_only + n_trg_only:
        src, trg, meaning = translation_pair(rng, lang, forms)
        if meaning in seen_meaning or src in seen_src or trg in seen_trg:
            continue
        seen_meaning.add(meaning)
        seen_src.add(src)
        seen_trg.add(trg)
        drawn.append((src, trg))
    kinds = ["pair"] * n_pairs + ["src"] * n_src_only + ["trg"] * n_trg_only
    rng.shuffle(kinds)
    n_src = n_pairs + n_src_only
    n_trg = n_pairs + n_trg_only
    src_ids = [f"{lang}-{k:06d}" for k in range(1, n_src + 1)]
    trg_ids = [f"en-{k:06d}" for k in range(1, n_trg + 1)]
    rng.shuffle(trg_ids)  # English ids do not follow the source ids
    rows = []
    for kind, (src, trg) in zip(kinds, drawn):
        row = {"source_sentence": "", "target_sentence": "", "source_lang": lang, "target_lang": "en",
               "source_id": "", "target_id": ""}
        if kind in ("pair", "src"):
            row["source_sentence"], row["source_id"] = src, src_ids.pop(0)
        if kind in ("pair", "trg"):
            row["target_sentence"], row["target_id"] = trg, trg_ids.pop(0)
        rows.append(row)
    return rows


def build_tatoeba(lang: str, path: str, n: int = N_EVAL) -> list[dict]:
    rng = rng_for(path)
    forms = _translation_forms(lang)

    def make(i):
        src, trg, _ = translation_pair(rng, lang, forms)
        return {"source_sentence": src, "target_sentence": trg, "source_lang": lang, "target_lang": "en"}

    rows = unique_rows(rng, n, make, lambda r: r["source_sentence"])
    assert len({r["target_sentence"] for r in rows}) == n
    return rows


# ---------------------------------------------------------------------------------------
# The file plan
# ---------------------------------------------------------------------------------------

XNLI_LANGS = ("en", "ar", "hi", "ru", "zh")
PAWSX_LANGS = ("en", "de", "ja", "ko", "zh")
UDPOS_LANGS = ("en", "ar", "hi", "ru", "zh")
PANX_LANGS = ("en", "ar", "hi", "ru", "zh")
XQUAD_LANGS = ("en", "ar", "hi", "ru", "zh")
MLQA_LANGS = ("en", "ar", "hi", "zh", "de")
TYDIQA_LANGS = ("en", "ar", "ru", "bn", "te")
BUCC_LANGS = ("de", "fr", "ru", "zh")
TATOEBA_LANGS = ("ar", "hi", "ru", "zh", "de")


def plan() -> dict:
    """{relative path: zero-argument builder}, in a stable order."""
    p: dict = {}

    def n_for(split):
        return N_TRAIN if split == "train" else N_EVAL

    for split in ("train", "validation", "test"):
        path = f"anli_plus/{split}.jsonl"
        p[path] = (lambda s=split, q=path: build_anli_plus(s, n_for(s), q))
    for split in ("train", "validation"):
        for task, fn in (("mnli", build_mnli), ("qqp", build_qqp), ("hellaswag", build_hellaswag),
                         ("cosmosqa", build_cosmosqa), ("commonsenseqa", build_commonsenseqa)):
            path = f"{task}/{split}.jsonl"
            p[path] = (lambda s=split, q=path, f=fn: f(s, n_for(s), q))
        path = f"squad_v1/{split}.jsonl"
        p[path] = (lambda s=split, q=path: build_squad("squad_v1", s, "en", n_for(s), q,
                                                       multi_answer=(s != "train")))
        path = f"squad_v2/{split}.jsonl"
        p[path] = (lambda s=split, q=path: build_squad("squad_v2", s, "en", n_for(s), q,
                                                       multi_answer=(s != "train"), unanswerable_every=3))
    for split in ("train", "validation", "test"):
        path = f"ccg/{split}.jsonl"
        p[path] = (lambda s=split, q=path: build_ccg(s, n_for(s), q))

    # XTREME
    p["xnli/train.en.jsonl"] = lambda: build_mnli("train", N_TRAIN, "xnli/train.en.jsonl")
    for split in ("validation", "test"):
        for lang in XNLI_LANGS:
            path = f"xnli/{split}.{lang}.jsonl"
            p[path] = (lambda s=split, l=lang, q=path: build_xnli(s, l, N_EVAL, q))
    p["pawsx/train.en.jsonl"] = lambda: build_pawsx("train", "en", N_TRAIN, "pawsx/train.en.jsonl")
    for split in ("validation", "test"):
        for lang in PAWSX_LANGS:
            path = f"pawsx/{split}.{lang}.jsonl"
            p[path] = (lambda s=split, l=lang, q=path: build_pawsx(s, l, N_EVAL, q))
    for task, fn, langs in (("udpos", build_udpos, UDPOS_LANGS), ("panx", build_panx, PANX_LANGS)):
        path = f"{task}/train.en.jsonl"
        p[path] = (lambda q=path, f=fn: f("train", "en", N_TRAIN, q))
        for split in ("validation", "test"):
            for lang in langs:
                path = f"{task}/{split}.{lang}.jsonl"
                p[path] = (lambda s=split, l=lang, q=path, f=fn: f(s, l, N_EVAL, q))
    p["xquad/train.en.jsonl"] = lambda: build_squad("xquad", "train", "en", N_TRAIN, "xquad/train.en.jsonl")
    p["xquad/validation.en.jsonl"] = lambda: build_squad("xquad", "validation", "en", N_EVAL,
                                                         "xquad/validation.en.jsonl", multi_answer=True)
    for lang in XQUAD_LANGS:
        path = f"xquad/test.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_squad("xquad", "test", l, N_EVAL, q))
    p["mlqa/train.en.jsonl"] = lambda: build_squad("mlqa", "train", "en", N_TRAIN, "mlqa/train.en.jsonl")
    for split in ("validation", "test"):
        for lang in MLQA_LANGS:
            path = f"mlqa/{split}.{lang}.jsonl"
            p[path] = (lambda s=split, l=lang, q=path: build_squad("mlqa", s, l, N_EVAL, q))
    p["tydiqa/train.en.jsonl"] = lambda: build_squad("tydiqa", "train", "en", N_TRAIN, "tydiqa/train.en.jsonl",
                                                     id_style="tydiqa")
    p["tydiqa/validation.en.jsonl"] = lambda: build_squad("tydiqa", "validation", "en", N_EVAL,
                                                          "tydiqa/validation.en.jsonl", id_style="tydiqa")
    for lang in TYDIQA_LANGS:
        path = f"tydiqa/test.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_squad("tydiqa", "test", l, N_EVAL, q, id_style="tydiqa"))
    for split in ("validation", "test"):
        for lang in BUCC_LANGS:
            path = f"bucc/{split}.{lang}.jsonl"
            p[path] = (lambda s=split, l=lang, q=path: build_bucc(s, l, q))
    for lang in TATOEBA_LANGS:
        path = f"tatoeba/test.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_tatoeba(l, q))
    plan_xtreme_r(p)
    plan_multilingual(p)
    return p


# ---------------------------------------------------------------------------------------
# XTREME-R: XCOPA (COPA rows), LAReQA (XQuAD-R paragraphs), Mewsli-X (mentions + entities)
# ---------------------------------------------------------------------------------------

XCOPA_LANGS = ("zh",)  # the XCOPA language our templates render
LAREQA_LANGS = ("en", "de", "ru", "zh")  # XQuAD-R languages our templates render
MEWSLIX_LANGS = ("en", "de", "ar", "ja")  # Mewsli-X mention languages our templates render
# Japanese has names but no event templates: the mention sentence for Mewsli-X.
MEWSLIX_JA = "{p}は{y}年に{c}へ行きました。"
N_LAREQA_PARAGRAPHS = 6
N_MEWSLIX_CONTEXTS = 8


def build_copa(split: str, lang: str, n: int, path: str, *, xcopa: bool = False) -> list[dict]:
    """COPA-schema rows: the right choice is a fact about the premise's city (keyword overlap),
    the wrong one a fact about another city; question alternates cause / effect."""
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 2)

    def make(i):
        etype = rng.choice([t for t in ("travel", "buy", "born") if t in LANG_EVENT_TYPES[lang]])
        ev = sample_event(rng, etype)
        premise, _, _ = render(lang, ev, "full")
        right, _, _ = render(lang, ev, "fact")
        other = sample_event(rng, "travel", avoid={"c": {ev["c"]}})
        wrong, _, _ = render(lang, other, "fact")
        choices = (right, wrong) if labels[i] == 0 else (wrong, right)
        row = {"premise": premise, "choice1": choices[0], "choice2": choices[1],
               "question": ("cause", "effect")[i % 2], "idx": i, "label": labels[i]}
        if xcopa:
            row["changed"] = False
        return row

    return unique_rows(rng, n, make, lambda r: r["premise"])


SIQA_QUESTIONS = ("What does {p} know about the city?", "What would {p} say about the city?",
                  "How would you describe the place {p} went to?")


def build_siqa(split: str, n: int, path: str) -> list[dict]:
    """Social IQa-schema rows (context, question, answerA-C, label "1".."3"): as in build_copa,
    the right answer is a fact about the context's city, the two wrong ones facts about other
    cities; COPA then reuses the skill (XTREME-R trains xcopa on SIQA first)."""
    rng = rng_for(path)
    labels = balanced_labels(rng, n, 3)

    def make(i):
        ev = sample_event(rng, rng.choice(("travel", "buy", "born")))
        context, _, values = render("en", ev, "full")
        right, _, _ = render("en", ev, "fact")
        wrong = []
        for _ in range(2):
            other = sample_event(rng, "travel", avoid={"c": {ev["c"], *(w["c"] for w in wrong)}})
            wrong.append(other)
        answers = [render("en", w, "fact")[0] for w in wrong]
        answers.insert(labels[i], right)
        question = SIQA_QUESTIONS[i % len(SIQA_QUESTIONS)].format(p=values["p"])
        return {"context": context, "question": question, "answerA": answers[0], "answerB": answers[1],
                "answerC": answers[2], "label": str(labels[i] + 1)}

    return unique_rows(rng, n, make, lambda r: r["context"])


def _lareqa_paragraphs() -> list[dict]:
    """Parallel paragraphs: the same events in every language, one question per paragraph."""
    rng = rng_for("lareqa", "paragraphs")
    out, used_targets = [], set()
    while len(out) < N_LAREQA_PARAGRAPHS:
        target = sample_event(rng, rng.choice(("travel", "buy", "born", "work")))
        key = (target["type"], target["p"], target["c"])
        if key in used_targets:
            continue
        used_targets.add(key)
        used = {k: {target[k]} for k in ("p", "c", "y", "n", "o", "org")}
        events = [target]
        for _ in range(rng.randint(1, 2)):
            ev = sample_event(rng, rng.choice(("travel", "buy", "born", "work")), avoid=used)
            for k in used:
                used[k].add(ev[k])
            events.append(ev)
        rng.shuffle(events)
        q = rng.randrange(len(QUESTIONS["en"][target["type"]]))
        out.append({"events": events, "target": events.index(target), "q": q,
                    "xling_id": stable_hex("lareqa", len(out))})
    return out


def build_lareqa_pool() -> list[dict]:
    """Every language's paragraphs (the shared answer pool), in our lareqa row schema."""
    rows = []
    paragraphs = _lareqa_paragraphs()
    for lang in LAREQA_LANGS:
        for number, par in enumerate(paragraphs, start=1):
            context, breaks, answer_start = "", [], None
            for k, ev in enumerate(par["events"]):
                if k:
                    context += SENT_JOIN.get(lang, " ")
                text, spans, values = render(lang, ev)
                if k == par["target"]:
                    template, field = QUESTIONS[lang][ev["type"]][par["q"]]
                    question, _ = fill(template, values)
                    answer_text, answer_start = values[field], len(context) + spans[field][0]
                breaks.append([len(context), len(context) + len(text)])
                context += text
            assert context[answer_start:answer_start + len(answer_text)] == answer_text
            rows.append({"lang": lang, "context_id": f"{lang}_{number}", "context": context,
                         "sentence_breaks": breaks,
                         "qas": [{"id": par["xling_id"], "question": question,
                                  "answers": [{"text": answer_text, "answer_start": answer_start}]}]})
    return rows


def _mewslix_entities() -> list[dict]:
    rows = []
    for i, city in enumerate(CITIES):
        title = city["en"]
        sents = [f"{title} is a city.", f"{title} has {CITY_ADJ['en'][i % 4]} streets."]
        desc = " ".join(sents)
        rows.append({"entity_id": f"Q{9100 + i}", "title": title, "description": desc,
                     "sentence_spans": [{"start": 0, "end": len(sents[0])},
                                        {"start": len(sents[0]) + 1, "end": len(desc)}],
                     "description_language": "en",
                     "description_url": f"https://en.wikipedia.org/wiki/Fixture_city_{i}"})
    for i, person in enumerate(PEOPLE):
        desc = f"{person['en']} is a person in a story."
        rows.append({"entity_id": f"Q{9200 + i}", "title": person["en"], "description": desc,
                     "sentence_spans": [{"start": 0, "end": len(desc)}], "description_language": "en",
                     "description_url": f"https://en.wikipedia.org/wiki/Fixture_person_{i}"})
    return rows


def build_mewslix(lang: str, path: str) -> list[dict]:
    """Mentions of cities in ``lang`` (Mewsli-X ContextualMentions rows), then every entity."""
    rng = rng_for(path)
    rows = []
    for j in range(N_MEWSLIX_CONTEXTS):
        ev = sample_event(rng, rng.choice(("travel", "buy", "born")))
        other = sample_event(rng, "work", avoid={"p": {ev["p"]}})
        if lang == "ja":
            first, _ = fill("{p}は{c}に住んでいます。", {"p": PEOPLE[other["p"]]["ja"], "c": CITIES[other["c"]]["ja"]})
            second, spans = fill(MEWSLIX_JA, {"p": PEOPLE[ev["p"]]["ja"], "y": str(ev["y"]),
                                                 "c": CITIES[ev["c"]]["ja"]})
        else:
            first, _, _ = render(lang, other)
            second, spans, values = render(lang, ev)
        joiner = SENT_JOIN.get(lang, " ")
        text = first + joiner + second
        offset = len(first) + len(joiner)
        start, end = spans["c"][0] + offset, spans["c"][1] + offset
        rows.append({
            "context": {"document_title": f"fixture {lang} {j}", "document_url": f"https://{lang}.wikinews.org/wiki/Fixture_{j}",
                        "document_id": stable_hex("mewslix", lang, j, n=16), "language": lang, "text": text,
                        "sentence_spans": [{"start": 0, "end": len(first)}, {"start": offset, "end": len(text)}]},
            "mentions": [{"example_id": stable_hex("mewslix", lang, j, "m", n=32),
                          "mention_span": {"start": start, "end": end, "text": text[start:end]},
                          "entity_id": f"Q{9100 + ev['c']}"}],
        })
    return rows + _mewslix_entities()


def plan_xtreme_r(p: dict) -> None:
    """XTREME-R's own tasks (xcopa, mewslix, lareqa) and their English training data (SIQA, then COPA)."""
    for split in ("train", "validation"):
        path = f"siqa/{split}.jsonl"
        p[path] = (lambda s=split, q=path: build_siqa(s, N_TRAIN if s == "train" else N_EVAL, q))
    p["xcopa/train.en.jsonl"] = lambda: build_copa("train", "en", N_TRAIN, "xcopa/train.en.jsonl")
    p["xcopa/validation.en.jsonl"] = lambda: build_copa("validation", "en", N_EVAL, "xcopa/validation.en.jsonl")
    for split in ("validation", "test"):
        for lang in XCOPA_LANGS:
            path = f"xcopa/{split}.{lang}.jsonl"
            p[path] = (lambda s=split, l=lang, q=path: build_copa(s, l, N_EVAL, q, xcopa=True))
    for lang in LAREQA_LANGS:  # each language's file holds the whole multilingual pool
        p[f"lareqa/test.{lang}.jsonl"] = build_lareqa_pool
    for lang in MEWSLIX_LANGS:
        path = f"mewslix/test.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_mewslix(l, q))


# ---------------------------------------------------------------------------------------
# Multilingual intermediate data: raw text for mlm, "machine-translated" intermediate tasks
# ---------------------------------------------------------------------------------------

MLM_LANGS = ("en", "de", "fr", "ru", "zh", "ar", "hi")
MNLI_TRANSLATIONS = ("de", "ru", "zh", "ar", "hi")  # the languages with restated/negated forms
SQUAD_TRANSLATIONS = ("de", "zh")


def build_mlm(lang: str, n: int, path: str) -> list[dict]:
    """n documents of 2-4 sentences about unrelated events (and now and then a city fact),
    as {"text": ...} rows: the text field of the wikimedia/wikipedia schema."""
    rng = rng_for(path)
    rows = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(2, 4)):
            form = "fact" if rng.random() < 0.2 else "full"
            ev = sample_event(rng, rng.choice(LANG_EVENT_TYPES[lang]))
            sentences.append(render(lang, ev, form)[0])
        rows.append({"text": SENT_JOIN.get(lang, " ").join(sentences)})
    return rows


def build_mnli_translation(lang: str, n: int, path: str, source: str = "mnli/train.jsonl") -> list[dict]:
    """The English MNLI train file "translated": row i draws the same events, label and idx
    as row i of ``source`` (same RNG, same draws, same de-duplication on the English text)
    and renders them in ``lang``, as a machine-translated copy keeps rows and labels."""
    rng = rng_for(source)
    labels = balanced_labels(rng, n, 3)

    def make(i):
        state = rng.getstate()
        english = nli_pair(rng, "en", labels[i])
        after = rng.getstate()
        rng.setstate(state)
        premise, hypothesis = nli_pair(rng, lang, labels[i])
        assert rng.getstate() == after  # rendering consumes no randomness: the draws match
        return {"premise": premise, "hypothesis": hypothesis, "label": labels[i], "idx": i, "_en": english}

    rows = unique_rows(rng, n, make, lambda r: r["_en"])
    return [{k: v for k, v in r.items() if k != "_en"} for r in rows]


def plan_multilingual(p: dict) -> None:
    """Multilingual intermediate data: mlm text and machine-translated intermediate tasks."""
    for lang in MLM_LANGS:
        path = f"mlm/train.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_mlm(l, N_TRAIN, q))
    for lang in MNLI_TRANSLATIONS:
        path = f"mnli/train.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_mnli_translation(l, N_TRAIN, q))
    for lang in SQUAD_TRANSLATIONS:  # SQuAD-style rows in the language (not row-parallel to English)
        path = f"squad_v1/train.{lang}.jsonl"
        p[path] = (lambda l=lang, q=path: build_squad("squad_v1", "train", l, N_TRAIN, q))


README = """\
# Bundled fixtures

These are synthetic, project-written fixtures: every sentence was generated for stilts-ds by
`tools/build_fixtures.py` from small per-language lexicons (people, cities, objects,
organisations, numbers, years) and templates; nothing is copied from a real data set. Each
file holds a few dozen rows (32 per train file, 24 per validation/test file; BUCC files hold
24 parallel pairs plus 4 source-only and 4 English-only distractor rows) in the real Hugging
Face hub row schema of its task (same field names and types; one JSON object per line), and
the labels follow simple surface patterns so that a tiny model can learn them (NLI: restated
/ negated / unrelated hypothesis; paraphrase: reordered vs one content word replaced; span
QA: the entity, number or year the question points to, always found in the context at
`answer_start`; multiple choice: the right choice shares a keyword with the context).
Regenerate them, byte for byte, with `python tools/build_fixtures.py` (`--check` compares
without writing), then rebuild the tokenizer with `python tools/build_tokenizer.py`. Layout:
English intermediate tasks live in `<task>/<split>.jsonl` (anli_plus, mnli, qqp, squad_v1,
squad_v2, hellaswag, cosmosqa, commonsenseqa, ccg, plus `ccg/tags.txt`, the sorted supertag
list; the CCG rows are our own toy supertagged sentences since CCGbank is licensed; and
`siqa`, Social IQa rows, the first stage of XTREME-R's xcopa recipe), XTREME
tasks in `<task>/<split>.<lang>.jsonl` (xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa, bucc,
tatoeba; XTREME-R's xcopa in COPA rows, lareqa as XQuAD-R paragraphs with sentence breaks
where every language's file holds the whole multilingual answer pool, mewslix as Mewsli-X
mention rows followed by all candidate entities), with English training files `<task>/train.en.jsonl` and non-Latin scripts (Arabic,
Devanagari, Cyrillic, Chinese, Japanese, Korean, Bengali, Telugu) in the other languages.
Multilingual intermediate data: `mlm/train.<lang>.jsonl` (en de fr ru zh ar hi; 32 documents
of a few sentences each as `{"text": ...}`, the text field of the wikimedia/wikipedia rows)
for the `mlm` task, and translated training copies beside the English files for
`<task>@<lang>`: `mnli/train.<lang>.jsonl` (de ru zh ar hi; row i is English row i with
the same events and label rendered in that language) and `squad_v1/train.<lang>.jsonl`
(de zh; SQuAD-style rows written in the language).

For real data, `stilts-ds convert TASK SOURCE --data-dir DIR` turns each official
distribution (XQuAD, MLQA, TyDiQA-GoldP, SQuAD 1.1/2.0, UD CoNLL-U, PAN-X, Tatoeba, XNLI,
PAWS-X, XCOPA, BUCC 2018, XQuAD-R, Mewsli-X) into this same layout and these same row schemas
under DIR, which `--data-dir DIR` and `data.local_tasks` then read; `stilts-ds convert --list`
names the official files each converter reads.
"""


def render_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for rel, build in plan().items():
        rows = build()
        files[rel] = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    tags = set()
    for split in ("train", "validation", "test"):
        for line in files[f"ccg/{split}.jsonl"].decode("utf-8").splitlines():
            tags.update(json.loads(line)["tags"])
    files["ccg/tags.txt"] = "".join(t + "\n" for t in sorted(tags)).encode("utf-8")
    files["README.md"] = README.encode("utf-8")
    return files


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixtures directory")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk; write nothing")
    args = ap.parse_args(argv)
    files = render_files()
    out: Path = args.out
    existing = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} if out.exists() else set()
    stale = sorted(p for p in existing - set(files) if p.endswith(".jsonl") or p.endswith("tags.txt"))
    if args.check:
        differ = [rel for rel, data in files.items()
                  if not (out / rel).is_file() or (out / rel).read_bytes() != data]
        for rel in differ + stale:
            print(f"out of date: {rel}", file=sys.stderr)
        return 1 if differ or stale else 0
    for rel, data in files.items():
        target = out / rel
        if not target.is_file() or target.read_bytes() != data:
            write_atomic(target, data)
    for rel in stale:  # left over from an older layout
        (out / rel).unlink()
    n_rows = sum(data.count(b"\n") for rel, data in files.items() if rel.endswith(".jsonl"))
    n_jsonl = sum(1 for rel in files if rel.endswith(".jsonl"))
    print(f"wrote {n_jsonl} jsonl files ({n_rows} rows) + ccg/tags.txt + README.md under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
