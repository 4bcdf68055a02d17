"""English lexicon of references to children (people under 16).

Every entry is written in the detector's *normalised* form: lower case, accents dropped,
apostrophes deleted ("child's" -> "childs", "kids'" -> "kids") and every other punctuation
mark, hyphen included, turned into a space ("6-year-old" -> "6 year old", "baby-sitter" ->
"baby sitter"). :mod:`pixsearch.indexer.policy.text` applies the same normalisation to the text.

Rules (also in ``docs/policy.md``): recall first -- a legal requirement -- so every word whose
ordinary meaning is a child is a term, even when it is sometimes used for adults ("girls",
"boys", "son", "youth", "teen"). A term passes only inside a listed idiom whose meaning is not
a child ("baby blue", "kid gloves", "teenage mutant ninja turtles") or when it names a young
animal ("baby elephant", "juvenile eagle", "a 2-year-old dog"). Words that merely *contain* a
term are other words and pass: "kidney", "kidding", "goatee", "Boyle", "sonar", "Sonny",
"Babylon", "cowboy", "girlfriend", "infantry", "between", "canteen".

>>> "childs" in WORDS and "kids" in WORDS and "kidney" not in WORDS
True
"""

from __future__ import annotations

import re

# --- single words (one token each) ---------------------------------------------------------

_BASE_FORMS: dict[str, tuple[str, ...]] = {
    # "childish", "childlike", "childless", "childproof" describe adults or objects: not listed.
    # Misspellings seen in the Flickr captions ("childern") are listed: recall first.
    "child": (
        "child",
        "childs",
        "children",
        "childrens",
        "childhood",
        "childhoods",
        "childern",
        "chilren",
        "chidren",
        "childen",
        "childing",
    ),
    # "kid" is also a young goat ("kid goat" passes, see IDIOMS); "kidney", "kidding",
    # "kidnap", "kidskin" and "skid" are other words.
    "kid": ("kid", "kids", "kidz", "kiddo", "kiddos", "kiddie", "kiddies", "kiddy"),
    # "cowboy", "busboy", "playboy", "homeboy", "boyfriend", "boyish" (adults) are other
    # words; "paperboy", "ballboy", "tomboy" name children and are listed.
    "boy": ("boy", "boys", "boyhood", "paperboy", "paperboys", "ballboy", "ballboys"),
    "tomboy": ("tomboy", "tomboys"),
    # "girlfriend", "cowgirl", "showgirl", "girlie"/"girly" (adult senses) are other words.
    "girl": ("girl", "girls", "girlhood", "gurl", "gurls", "ballgirl", "ballgirls"),
    # "babe" (an adult) and "Babylon" are other words. A babysitter implies a child in the
    # picture: listed. Colour and food idioms pass (IDIOMS), young animals pass (ANIMALS).
    "baby": (
        "baby",
        "babys",
        "babies",
        "babyhood",
        "babysit",
        "babysits",
        "babysat",
        "babysitter",
        "babysitters",
        "babysitting",
    ),
    # "toddle" is what a toddler does: the verb is a term too.
    "toddler": (
        "toddler",
        "toddlers",
        "todler",
        "todlers",
        "toddle",
        "toddles",
        "toddled",
        "toddling",
    ),
    # "infantry" and "infantile" are other words.
    "infant": ("infant", "infants", "infancy"),
    "newborn": ("newborn", "newborns"),
    # "canteen", "fifteen" are other words; ages are patterns (AGE_PATTERNS).
    "teen": (
        "teen",
        "teens",
        "teenager",
        "teenagers",
        "teenage",
        "teenaged",
        "preteen",
        "preteens",
    ),
    "tween": ("tween", "tweens", "tweenager", "tweenagers"),
    "adolescent": ("adolescent", "adolescents", "adolescence"),
    # "youth" covers 15-24: recall first, so it is a term; "youth hostel" and
    # "fountain of youth" pass. "young" alone is not a term ("young man", "young woman",
    # "young lady", "young adult", "young couple" pass); "young boy" is caught by "boy".
    "youth": ("youth", "youths", "youngster", "youngsters", "youngling", "younglings"),
    "juvenile": ("juvenile", "juveniles"),
    # "minor" is a term; "a minor injury", "in A minor" (the key), "minor league" pass (IDIOMS).
    "minor": ("minor", "minors", "underage", "underaged"),
    # British and Scots words for a boy, a girl, a child ("lassie", the dog, passes).
    "lad": ("lad", "lads", "laddie", "laddies", "lass", "lasses", "bairn", "bairns", "wean"),
    # Informal words for children.
    "slang_child": (
        "nipper",
        "nippers",
        "sprog",
        "sprogs",
        "moppet",
        "moppets",
        "whippersnapper",
        "whippersnappers",
        "youngun",
        "youngins",
        "younguns",
        "kiddos",
    ),
    # Kinship and care words whose ordinary meaning is a child (recall first, like "son").
    "kin": (
        "niece",
        "nieces",
        "nephew",
        "nephews",
        "offspring",
        "orphan",
        "orphans",
        "orphanage",
        "neonate",
        "neonates",
        "neonatal",
    ),
    # Pupils are schoolchildren; the eye's pupil passes (IDIOMS: "dilated pupils", "eye pupil").
    "pupil": ("pupil", "pupils"),
    # "son" is a child of someone, often an adult: recall first. "sonar", "Sonny" (a name),
    # "Jackson", "Peterson" are other words. "son of a gun" passes (IDIOMS).
    "son": ("son", "sons"),
    "daughter": ("daughter", "daughters"),
    # School words name pupils; "school", "student", "pupil", "schoolyard" do not (students
    # are often adults, "pupil" is also part of the eye).
    "school": (
        "schoolboy",
        "schoolboys",
        "schoolgirl",
        "schoolgirls",
        "schoolkid",
        "schoolkids",
        "schoolchild",
        "schoolchildren",
        "preschool",
        "preschools",
        "kindergarten",
        "kindergartens",
        "kindergarden",
        "kindergartner",
        "kindergartners",
        "kindergartener",
        "kindergarteners",
    ),
    # "tater tots" passes (IDIOMS). "brat" (also a sausage), "urchin" (sea urchin; "street
    # urchin" is a phrase term) and "lassie" (the dog) are not listed.
    "tot": ("tot", "tots", "tyke", "tykes", "rugrat", "rugrats"),
    "pediatric": ("pediatric", "paediatric", "pediatrics", "paediatrics"),
    # Slang that sexualises minors: always a term.
    "slang": ("jailbait", "loli", "lolis", "lolicon", "lolita", "lolitas", "shota", "shotacon"),
}

# Kinship prefixes that build one word with a child noun: "grandchild", "stepson", "godson".
_KIN_PREFIXES: tuple[str, ...] = ("grand", "greatgrand", "step", "god")
_KIN_BASES: tuple[str, ...] = (
    "child",
    "childs",
    "children",
    "childrens",
    "kid",
    "kids",
    "son",
    "sons",
    "daughter",
    "daughters",
    "baby",
    "babies",
)


def _all_words() -> frozenset[str]:
    words = {form for forms in _BASE_FORMS.values() for form in forms}
    words.update(prefix + base for prefix in _KIN_PREFIXES for base in _KIN_BASES)
    words.update({"girlscout", "girlscouts", "boyscout", "boyscouts"})
    return frozenset(words)


#: Every single-word term, normalised.
WORDS: frozenset[str] = _all_words()

#: Word endings that make a term of any word: "preschooler", "highschoolers", "homeschooler".
SUFFIXES: tuple[str, ...] = ("schooler", "schoolers")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- idioms: a term inside one of these phrases passes ------------------------------------

#: Phrases (as token tuples) whose meaning is not a child. The term inside passes; another
#: occurrence of a term in the same text is still found.
IDIOMS: tuple[tuple[str, ...], ...] = (
    # colours, food, plants and objects named "baby"
    ("baby", "blue"),
    ("baby", "pink"),
    ("baby", "back", "ribs"),
    ("baby", "back", "rib"),
    ("baby", "carrot"),
    ("baby", "carrots"),
    ("baby", "spinach"),
    ("baby", "corn"),
    ("baby", "potatoes"),
    ("baby", "grand"),  # the piano
    ("babys", "breath"),  # the flower (Gypsophila)
    ("baby", "boomer"),  # adults born 1946-1964
    ("baby", "boomers"),
    # before the birth: no child in the picture
    ("baby", "shower"),
    ("baby", "showers"),
    ("baby", "bump"),
    # goat leather and young goats
    ("kid", "gloves"),
    ("kid", "glove"),
    ("kid", "leather"),
    ("kid", "goat"),
    ("kid", "goats"),
    # titles, brands and interjections
    ("teenage", "mutant", "ninja", "turtles"),
    ("teenage", "mutant", "ninja", "turtle"),
    ("teen", "spirit"),
    ("boy", "band"),
    ("boy", "bands"),
    ("oh", "boy"),
    ("son", "of", "a", "gun"),
    ("son", "of", "a", "bitch"),
    ("childs", "play"),  # "child's play": something easy
    ("child", "proof"),  # "child-proof" lid, like "childproof"
    ("minor", "league"),
    ("minor", "leagues"),
    ("minor", "leaguer"),
    ("minor", "injury"),
    ("minor", "injuries"),
    ("minor", "damage"),
    ("minor", "repairs"),
    ("minor", "detail"),
    ("minor", "details"),
    ("minor", "key"),
    ("minor", "chord"),
    ("minor", "chords"),
    ("minor", "scale"),
    ("in", "a", "minor"),
    ("dilated", "pupil"),
    ("dilated", "pupils"),
    ("pupil", "dilation"),
    ("pupils", "dilated"),
    ("eye", "pupil"),
    ("eye", "pupils"),
    ("cat", "pupil"),
    ("cats", "pupils"),
    ("youth", "hostel"),
    ("youth", "hostels"),
    ("fountain", "of", "youth"),
    ("tater", "tots"),
    ("tater", "tot"),
    # an object (a small inflatable pool): a child in it is named by another word
    ("kiddie", "pool"),
    ("kiddie", "pools"),
    ("kiddy", "pool"),
    ("kiddy", "pools"),
)

#: Young animals: "baby", "juvenile" or an age directly before one of these pass.
ANIMALS: frozenset[str] = _words(
    """
    animal bird elephant giraffe zebra lion tiger bear panda koala monkey gorilla chimp
    chimpanzee orangutan dog puppy pup cat kitten horse pony foal donkey cow calf goat sheep
    lamb pig piglet deer fawn fox wolf rabbit bunny hamster duck duckling chick chicken owl
    penguin seal dolphin whale turtle tortoise snake alligator crocodile shark fish squirrel
    raccoon hippo rhino camel llama alpaca kangaroo otter hedgehog bat swan goose eagle hawk
    robin sparrow dinosaur dragon bull ox bison buffalo moose elk cheetah leopard jaguar
    """
) | _words(
    """
    animals birds elephants giraffes zebras lions tigers bears pandas koalas monkeys gorillas
    chimps orangutans dogs puppies pups cats kittens horses ponies foals donkeys cows calves
    goats lambs pigs piglets foxes wolves rabbits bunnies ducks ducklings chicks chickens owls
    penguins seals dolphins whales turtles tortoises snakes alligators crocodiles sharks
    squirrels raccoons hippos rhinos camels llamas alpacas kangaroos otters hedgehogs bats
    swans geese eagles hawks robins sparrows dinosaurs dragons bulls oxen cheetahs leopards
    jaguars
    """
)

#: Terms that pass when the next word is in ANIMALS.
ANIMAL_MODIFIERS: frozenset[str] = frozenset({"baby", "juvenile"})

# --- multi-word terms and ages (regular expressions over the normalised text) -------------

_NUM_UNDER_16 = (
    r"(?:1[0-5]|0?[0-9]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|thirteen|fourteen|fifteen|fiveteen|half)"
)
_NUM_UNDER_19 = r"(?:1[0-8]|[1-9])"
_NUM_ANY = (
    r"(?:\d{1,3}|a|few|several|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|eighteen|twenty|half)"
)
_NOT_ANIMAL = r"(?! (?:" + "|".join(sorted(ANIMALS, key=len, reverse=True)) + r")\b)"

#: Regular expressions (``re.VERBOSE`` off) for terms of several words and for ages under 16.
#: Ages of 16 and over pass: "a 30-year-old man", "sixteen year old".
PHRASE_PATTERNS: tuple[str, ...] = (
    r"\blittle ones?\b",
    r"\bnew borns?\b",
    r"\bpre (?:school|schools|teen|teens|teenager|teenagers)\b",
    r"\bschool aged?\b",
    r"\bunder aged?\b",
    r"\blittle league(?:s|rs?)?\b",  # youth baseball
    r"\bcub scouts?\b",
    r"\bkinder garten\b",
    # elementary school students, primary school pupils, grade school class, middle schoolers
    r"\b(?:elementary|primary|grade|middle|junior high|nursery|infant) schools? "
    r"(?:students?|pupils?|kids|class(?:es|mates?|rooms?)?|teams?|choir|field trips?)\b",
    r"\bstreet urchins?\b",
    # 6 year old, 6 years old, 6 yr old, nine year olds, 6yo, 6 y o (not before an animal)
    rf"\b{_NUM_UNDER_16} ?(?:(?:years?|yrs?) olds?|yo|y o)\b{_NOT_ANIMAL}",
    # 3 month old, 10 weeks old, a few days old: any number of months, weeks or days
    rf"\b{_NUM_ANY} ?(?:months?|mos?|weeks?|wks?|days?) old\b{_NOT_ANIMAL}",
    # age 6, aged 10, ages 3 5, age of 7, under the age of 16
    rf"\bage[ds]? (?:of )?{_NUM_UNDER_16}\b",
    r"\bunder (?:the )?age of (?:1[0-6]|[1-9])\b",
    # under 5s, under 12s, u12, u16s (youth teams)
    rf"\bunder {_NUM_UNDER_19} ?s\b",
    r"\bu(?:1[0-8]|[5-9])s?\b",
    # 5th graders, first grader
    r"\b(?:1st|2nd|3rd|[4-9]th|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth"
    r"|kindergarten) graders?\b",
)

#: Every match of PHRASE_PATTERNS contains a digit or one of these words: the detector runs
#: the (slower) regular expression only on texts that do. Keep it in step with the patterns.
PHRASE_TRIGGERS: frozenset[str] = _words(
    "little new pre school schools under cub kinder age aged ages old olds yo y grader graders"
    " street"
)

#: The compiled alternation of PHRASE_PATTERNS.
PHRASE_RE: re.Pattern[str] = re.compile("|".join(f"(?:{p})" for p in PHRASE_PATTERNS))
