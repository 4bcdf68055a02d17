"""Russian lexicon of references to children (people under 16), with its morphology.

Entries are regular expressions over the detector's *normalised* text: lower case, accents
dropped, which also folds "ё" into "е" and "й" into "и" (so "ребёнок" is written "ребенок",
"малышей" is written "малышеи"). Each pattern matches a whole word in every case and number,
diminutives included; ``\\w*`` after a stem is used only where every word with that stem
is about a child.

Judgment calls (also in ``docs/policy.md``):

- "сынок", "сынишка", "доченька", "ребята", "девчонка", "пацан" are terms: they name children
  even when said to an adult (recall first).
- "дочерняя компания" (a subsidiary) passes: "дочерний" is not listed.
- "детектив", "деталь", "детонатор", "деть", "детище" pass: "дет" is only a term with the
  endings of "дети", "детский", "детство", "детвора", "детишки", "детка", "детсад", "детдом".
- "детёныш" (a young animal) passes; "подрост" (forest undergrowth) passes, "подросток"
  does not.
- "мальчишник" (a stag party) and the surname "Малышев(а)" pass.
- "девушка" (a young woman), "юноша", "юный", "студент", "ученик", "школьный",
  "одноклассник" pass, like "young woman", "student" and "school" in English.
- "N-летний" ("пятилетний") is not a term: it is as often a duration ("пятилетний план") as
  an age; the noun after it ("пятилетний мальчик") is caught. "годовалый" is a term.

>>> bool(RU_RE.search("маленькии мальчик")), bool(RU_RE.search("детектив"))
(True, False)
"""

from __future__ import annotations

import re

#: One pattern per lemma family; the detector joins them into one alternation.
RU_PATTERNS: tuple[str, ...] = (
    # ребенок, ребенка, ребеночек ...; ребята, ребят, ребятишки, ребятня
    r"ребен\w*",
    r"ребят\w*",
    # дети, детеи, детям, детьми, детях; детскии; детство; детвора; детишки; детка, детки,
    # деток; деточка; детонька; детсад; детдом; детясли
    r"дет(?:и|еи|ям|ьми|ях|ок|ск\w*|ств\w*|вор\w*|ишк\w*|к[аиуеоь]\w*|очк\w*|оньк\w*"
    r"|сад\w*|дом\w*|ясл\w*)",
    # дитя, дитяти, дитятко, дите, дитенок
    r"дит(?:я|яти|ятеи|ятк\w*|е|ен\w*|ят)",
    # мальчик, мальчишка, мальчуган, мальчонка ... but not мальчишник (a stag party)
    r"мальч(?!ишник)\w*",
    # девочка, девочек, девчонка, девчушка, девчата, девчурка (not девушка)
    r"девоч\w*",
    r"девчон\w*",
    r"девчушк\w*",
    r"девчат\w*",
    r"девчурк\w*",
    # малыш, малыши, малышеи, малышка, малышок, малышня ... but not Малышев, Малышева
    r"малыш(?!ев)\w*",
    r"малютк\w*",
    r"малявк\w*",
    r"мелюзг\w*",
    # подросток, подростка, подростки, подростковыи (not подрост, undergrowth)
    r"подрост(?:ок|к\w*)",
    # школьник, школьница, дошкольник, дошкольныи; школота
    r"школьн(?:ик|иц)\w*",
    r"дошкольн\w*",
    r"школот\w*",
    r"(?:перво|второ|третье|четверо|пяти|младше|старше)классни\w*",
    r"первоклашк\w*",
    # сын, сына, сыновья, сынок, сыночек, сынишка, сынуля (not сыр, сыпь)
    r"сын(?:а|у|ом|е|ы|ок|ов\w*|оч\w*|ишк\w*|ул\w*|к\w*)?",
    r"пасын\w*",
    # дочь, дочери, дочерью, дочереи, дочка, доченька, дочурка (not дочерняя, дочерна)
    r"доч(?:ь|ер(?:и|ью|еи|ям|ьми|ях)|а|у|ои|к\w*|еньк\w*|ечк\w*|урк\w*|уш\w*)",
    r"падчериц\w*",
    # внук, внучка, внучата, внуки
    r"внук\w*",
    r"внуч\w*",
    # младенец, младенческии; новорожденныи; грудничок
    r"младен\w*",
    r"новорожд\w*",
    r"груднич\w*",
    # карапуз, бутуз, кроха
    r"карапуз\w*",
    r"бутуз\w*",
    r"крох(?:а|е|у|ои|ам|ами)",
    # тинеиджер, тинэиджер, пацан, пацанка
    r"тин[еэ]иджер\w*",
    r"пацан\w*",
    # несовершеннолетнии, малолетка, малолетнии; годовалыи, полугодовалыи
    r"несовершеннолет\w*",
    r"малолет\w*",
    r"(?:полу)?годовал\w*",
    # чадо, чада; малец, мальца; парнишка, паренек (a lad; "парень", a guy, passes); отрок
    r"чад(?:о|а|ам|ами|ах)",
    r"мал(?:ец|ьц\w*)",
    r"парнишк\w*",
    r"паренек\w*",
    r"паренька\w*",
    r"отрок\w*",
    r"отроч\w*",
    # ученики начальнои школы, младших классов (elementary school pupils)
    r"(?:начальн|младш)\w* (?:школ|класс)\w*",
    # slang that sexualises minors
    r"лоли",
    r"лолит\w*",
    r"лоликон\w*",
    r"шота",
    r"шотакон\w*",
)

#: The compiled alternation, whole words only.
RU_RE: re.Pattern[str] = re.compile(r"\b(?:" + "|".join(RU_PATTERNS) + r")\b")

#: The same patterns for Latin-script Russian read back in Cyrillic, where soft and hard signs
#: are usually left out ("malchik" -> "малчик"): the signs are optional, and "ts" is read as
#: "тс" (the transliteration keeps it) or "ц".
RU_TRANSLIT_RE: re.Pattern[str] = re.compile(
    r"(?:"
    + "|".join(RU_PATTERNS).replace("ь", "ь?").replace("ъ", "ъ?").replace("ц", "(?:ц|тс)")
    + r")"
)
