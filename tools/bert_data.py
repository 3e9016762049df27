#!/usr/bin/env python3
"""BERT pre-training data for ttfc (issue 20): a synthetic corpus, a tokenizer, masked examples.

NumPy and the standard library only. Format and design: IR-specs/bert-data.md.

  bert_data.py corpus --out CORPUS.txt [--documents N] [--seed S]
      a corpus from a probabilistic grammar with topics: one sentence per line, a blank line
      between documents; the same text for the same seed.
  bert_data.py vocab --text FILE [--text FILE ...] --size V --out VOCAB.json
      a byte-pair-merge subword vocabulary (SentencePiece-style word-start marker) learned from
      any UTF-8 text; ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK].
  bert_data.py encode --text FILE --vocab VOCAB.json --out TRAIN.npz [--max-length 128]
                      [--seed S] [--eval-fraction F --eval-out EVAL.npz] [--vocab-size 8192]
      [CLS] A [SEP] B [SEP] examples with BERT masking, columns tokens, segments, lengths,
      mlm_labels, mlm_weights, sentence_labels; prints the unigram and bigram MLM baselines.
      --max-predictions K writes the gathered layout mlm_positions, mlm_ids, mlm_weights [N, K].
  bert_data.py all --dir DIR [--documents 2000] [--seed 0] [--size 8192] [--max-length 128]
      corpus -> vocab -> encode into DIR/corpus.txt, DIR/vocab.json, DIR/train.npz, DIR/eval.npz.
  bert_data.py baseline --data TRAIN.npz [--eval EVAL.npz]
      the unigram and bigram baselines of existing files.
  bert_data.py decode --vocab VOCAB.json IDS...
      the text of a list of ids (debugging).
"""
import argparse
import bisect
import collections
import heapq
import json
import os
import random
import re
import sys
import unicodedata

import numpy as np

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPACE = "\u2581"  # the word-start marker ("▁"), as in SentencePiece
MAX_CHUNK = 48  # longest pre-token in characters; longer runs are cut (bounds BPE work per word)
MAX_TRAINING_WORDS = 30000  # merges are learned from the most frequent distinct pre-tokens
VOCAB_FORMAT = "ttfc-bert-vocab"


class DataError(Exception):
    """A named, user-facing error (bad input file, bad option)."""


# ---------------------------------------------------------------------------------------------
# 1. The grammar corpus
# ---------------------------------------------------------------------------------------------
# Nouns are (singular, plural, class); classes drive the verbs' selectional preferences:
# p = person, a = animal, f = food, o = object, l = place. Verbs are (plural/base, 3rd singular,
# past, subject classes, object classes or None for intransitive).

GENERAL_NOUNS = [
    ("man", "men", "p"), ("woman", "women", "p"), ("child", "children", "p"),
    ("friend", "friends", "p"), ("bird", "birds", "a"), ("dog", "dogs", "a"),
    ("box", "boxes", "o"), ("bag", "bags", "o"), ("bread", "breads", "f"),
    ("house", "houses", "l"), ("road", "roads", "l"), ("water", "waters", "f"),
]
GENERAL_VERBS = [
    ("see", "sees", "saw", "pa", "pafol"), ("like", "likes", "liked", "pa", "pafo"),
    ("find", "finds", "found", "pa", "pafo"), ("watch", "watches", "watched", "pa", "pa"),
    ("carry", "carries", "carried", "p", "fo"), ("want", "wants", "wanted", "pa", "fo"),
    ("sleep", "sleeps", "slept", "pa", None), ("wait", "waits", "waited", "pa", None),
    ("eat", "eats", "ate", "pa", "f"),
]
GENERAL_ADJECTIVES = ["big", "small", "old", "new", "good", "quiet", "happy", "little",
                      "red", "other"]
TOPICS = {
    "farm": dict(
        nouns=[("farmer", "farmers", "p"), ("shepherd", "shepherds", "p"),
               ("cow", "cows", "a"), ("horse", "horses", "a"), ("sheep", "sheep", "a"),
               ("goat", "goats", "a"), ("hen", "hens", "a"), ("pig", "pigs", "a"),
               ("apple", "apples", "f"), ("egg", "eggs", "f"), ("corn", "corn", "f"),
               ("tractor", "tractors", "o"), ("fence", "fences", "o"), ("bucket", "buckets", "o"),
               ("barn", "barns", "l"), ("field", "fields", "l"), ("meadow", "meadows", "l")],
        verbs=[("feed", "feeds", "fed", "p", "a"), ("milk", "milks", "milked", "p", "a"),
               ("plow", "plows", "plowed", "p", "l"), ("graze", "grazes", "grazed", "a", None),
               ("harvest", "harvests", "harvested", "p", "f"),
               ("chase", "chases", "chased", "a", "a"), ("mend", "mends", "mended", "p", "o")],
        adjectives=["muddy", "green", "hungry", "brown", "wooden", "early"],
        adverbs=["at dawn", "after the rain", "every morning", "in the spring"]),
    "sea": dict(
        nouns=[("sailor", "sailors", "p"), ("captain", "captains", "p"),
               ("fisherman", "fishermen", "p"), ("fish", "fish", "a"), ("whale", "whales", "a"),
               ("gull", "gulls", "a"), ("crab", "crabs", "a"), ("oyster", "oysters", "f"),
               ("shrimp", "shrimp", "f"), ("net", "nets", "o"), ("boat", "boats", "o"),
               ("anchor", "anchors", "o"), ("sail", "sails", "o"), ("harbor", "harbors", "l"),
               ("island", "islands", "l"), ("beach", "beaches", "l"), ("wave", "waves", "l")],
        verbs=[("sail", "sails", "sailed", "p", None), ("swim", "swims", "swam", "pa", None),
               ("catch", "catches", "caught", "pa", "af"), ("steer", "steers", "steered", "p", "o"),
               ("pull", "pulls", "pulled", "p", "o"), ("dive", "dives", "dived", "pa", None),
               ("cross", "crosses", "crossed", "pa", "l")],
        adjectives=["salty", "stormy", "blue", "wet", "deep", "calm"],
        adverbs=["at low tide", "before the storm", "every evening", "in the fog"]),
    "city": dict(
        nouns=[("driver", "drivers", "p"), ("officer", "officers", "p"),
               ("student", "students", "p"), ("banker", "bankers", "p"),
               ("pigeon", "pigeons", "a"), ("rat", "rats", "a"), ("coffee", "coffees", "f"),
               ("sandwich", "sandwiches", "f"), ("taxi", "taxis", "o"), ("bus", "buses", "o"),
               ("ticket", "tickets", "o"), ("phone", "phones", "o"), ("street", "streets", "l"),
               ("station", "stations", "l"), ("office", "offices", "l"),
               ("tower", "towers", "l"), ("park", "parks", "l")],
        verbs=[("drive", "drives", "drove", "p", "o"), ("call", "calls", "called", "p", "p"),
               ("buy", "buys", "bought", "p", "fo"), ("sell", "sells", "sold", "p", "fo"),
               ("rush", "rushes", "rushed", "pa", None), ("park", "parks", "parked", "p", "o"),
               ("visit", "visits", "visited", "p", "pl")],
        adjectives=["busy", "noisy", "crowded", "grey", "tall", "late"],
        adverbs=["at rush hour", "after work", "every night", "on weekdays"]),
    "kitchen": dict(
        nouns=[("cook", "cooks", "p"), ("baker", "bakers", "p"), ("waiter", "waiters", "p"),
               ("cat", "cats", "a"), ("mouse", "mice", "a"), ("soup", "soups", "f"),
               ("cake", "cakes", "f"), ("onion", "onions", "f"), ("cheese", "cheeses", "f"),
               ("pie", "pies", "f"), ("knife", "knives", "o"), ("pan", "pans", "o"),
               ("spoon", "spoons", "o"), ("oven", "ovens", "o"), ("table", "tables", "l"),
               ("shelf", "shelves", "l"), ("pantry", "pantries", "l")],
        verbs=[("bake", "bakes", "baked", "p", "f"), ("cook", "cooks", "cooked", "p", "f"),
               ("taste", "tastes", "tasted", "pa", "f"), ("slice", "slices", "sliced", "p", "f"),
               ("stir", "stirs", "stirred", "p", "f"), ("wash", "washes", "washed", "p", "o"),
               ("serve", "serves", "served", "p", "f")],
        adjectives=["hot", "sweet", "fresh", "sharp", "clean", "warm"],
        adverbs=["before dinner", "at noon", "every sunday", "after breakfast"]),
    "forest": dict(
        nouns=[("hunter", "hunters", "p"), ("ranger", "rangers", "p"), ("wolf", "wolves", "a"),
               ("fox", "foxes", "a"), ("deer", "deer", "a"), ("owl", "owls", "a"),
               ("bear", "bears", "a"), ("berry", "berries", "f"), ("mushroom", "mushrooms", "f"),
               ("nut", "nuts", "f"), ("axe", "axes", "o"), ("log", "logs", "o"),
               ("rope", "ropes", "o"), ("tree", "trees", "l"), ("river", "rivers", "l"),
               ("cave", "caves", "l"), ("hill", "hills", "l")],
        verbs=[("hunt", "hunts", "hunted", "pa", "a"), ("climb", "climbs", "climbed", "pa", "l"),
               ("gather", "gathers", "gathered", "pa", "f"), ("howl", "howls", "howled", "a", None),
               ("chop", "chops", "chopped", "p", "o"), ("hide", "hides", "hid", "pa", None),
               ("track", "tracks", "tracked", "pa", "a")],
        adjectives=["dark", "wild", "tall", "cold", "silent", "ancient"],
        adverbs=["at night", "in the winter", "every autumn", "before sunrise"]),
    "school": dict(
        nouns=[("teacher", "teachers", "p"), ("pupil", "pupils", "p"),
               ("principal", "principals", "p"), ("hamster", "hamsters", "a"),
               ("lunch", "lunches", "f"), ("orange", "oranges", "f"), ("book", "books", "o"),
               ("pencil", "pencils", "o"), ("lesson", "lessons", "o"), ("map", "maps", "o"),
               ("desk", "desks", "o"), ("classroom", "classrooms", "l"),
               ("library", "libraries", "l"), ("hall", "halls", "l"), ("yard", "yards", "l")],
        verbs=[("read", "reads", "read", "p", "o"), ("write", "writes", "wrote", "p", "o"),
               ("teach", "teaches", "taught", "p", "p"), ("learn", "learns", "learned", "p", "o"),
               ("study", "studies", "studied", "p", None), ("draw", "draws", "drew", "p", "o"),
               ("borrow", "borrows", "borrowed", "p", "o")],
        adjectives=["clever", "curious", "long", "difficult", "bright", "strict"],
        adverbs=["after class", "every monday", "before the exam", "at recess"]),
}
PREPOSITIONS = ["in", "near", "behind", "beside", "under", "across"]
SG_DETERMINERS = ["the", "a", "this", "that", "every", "one", "my", "her"]
PL_DETERMINERS = ["the", "these", "those", "some", "many", "two", "three", "my", "her"]
SG_DET_WEIGHTS = [10, 7, 2, 2, 1, 1, 1, 1]
PL_DET_WEIGHTS = [8, 2, 2, 3, 2, 2, 1, 1, 1]
TOPIC_NAMES = sorted(TOPICS)
PRONOUNS = {"man": "he", "fisherman": "he", "woman": "she"}


class _Choice:
    """A weighted choice among items, drawn with one rng.random() (stable across Pythons)."""

    def __init__(self, items, weights):
        self.items = list(items)
        self.cumulative = []
        total = 0.0
        for w in weights:
            total += w
            self.cumulative.append(total)
        self.total = total

    def draw(self, rng):
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


SG_DET = _Choice(SG_DETERMINERS, SG_DET_WEIGHTS)
PL_DET = _Choice(PL_DETERMINERS, PL_DET_WEIGHTS)
_TABLES = {}


def _topic_tables(topic):
    """Weighted choices of one topic: its own words 5-6 times as likely as the general ones."""
    if topic in _TABLES:
        return _TABLES[topic]
    t = TOPICS[topic]
    nouns = [(n, 6.0) for n in t["nouns"]] + [(n, 1.0) for n in GENERAL_NOUNS]
    verbs = [(v, 5.0) for v in t["verbs"]] + [(v, 1.0) for v in GENERAL_VERBS]
    tables = {"nouns": {}, "verbs": {}}
    for classes in ("p", "a", "f", "o", "l", "pa", "af", "fo", "pl", "pafo", "pafol", "paof"):
        chosen = [(n, w) for n, w in nouns if n[2] in classes]
        tables["nouns"][classes] = _Choice([n for n, _ in chosen], [w for _, w in chosen])
    for c in "pafol":
        for transitive in (True, False, None):
            chosen = [(v, w) for v, w in verbs if c in v[3]
                      and (transitive is None or (v[4] is not None) == transitive)]
            if chosen:
                tables["verbs"][c, transitive] = _Choice([v for v, _ in chosen],
                                                         [w for _, w in chosen])
    adjectives = t["adjectives"] + GENERAL_ADJECTIVES
    tables["adjectives"] = _Choice(adjectives, [4.0] * len(t["adjectives"])
                                   + [1.0] * len(GENERAL_ADJECTIVES))
    _TABLES[topic] = tables
    return tables


class Grammar:
    """Sentences of one document: a topic, a tense and a protagonist."""

    def __init__(self, rng, topic):
        self.rng = rng
        t = TOPICS[topic]
        tables = _topic_tables(topic)
        self.noun_tables = tables["nouns"]
        self.verb_tables = tables["verbs"]
        self.adjectives = tables["adjectives"]
        self.adverbs = t["adverbs"]
        self.past = rng.random() < 0.3
        people = [n for n in t["nouns"] if n[2] in "pa"]
        self.protagonist = people[rng.randrange(len(people))]

    def noun(self, classes):
        rng = self.rng
        if self.protagonist[2] in classes and rng.random() < 0.25:
            return self.protagonist
        return self.noun_tables[classes].draw(rng)

    def verb(self, subject_class, transitive=None):
        return self.verb_tables[subject_class, transitive].draw(self.rng)

    def verb_form(self, v, plural):
        if self.past:
            return v[2]
        return v[0] if plural else v[1]

    def be(self, plural):
        if self.past:
            return "were" if plural else "was"
        return "are" if plural else "is"

    def noun_phrase(self, classes, depth, plural=None):
        rng = self.rng
        n = self.noun(classes)
        if plural is None:
            plural = rng.random() < 0.4
        if n[0] == n[1] and n[2] in "f" and rng.random() < 0.5:
            plural = False
        words = []
        adjective = None
        if rng.random() < 0.45:
            adjective = self.adjectives.draw(rng)
        if plural:
            det = PL_DET.draw(rng)
        else:
            det = SG_DET.draw(rng)
        head = n[1] if plural else n[0]
        first = adjective or head
        if det == "a" and first[0] in "aeiou":
            det = "an"
        words.append(det)
        if adjective:
            words.append(adjective)
        words.append(head)
        if depth < 2 and n[2] != "l" and rng.random() < 0.15:
            words += self.prepositional_phrase(depth + 1)
        elif depth < 1 and n[2] in "pa" and rng.random() < 0.2:
            words += self.relative_clause(n, plural, depth + 1)
        return words, n, plural

    def prepositional_phrase(self, depth):
        prep = PREPOSITIONS[self.rng.randrange(len(PREPOSITIONS))]
        np_words, _, _ = self.noun_phrase("l", depth)
        return [prep] + np_words

    def relative_clause(self, head, plural, depth):
        rng = self.rng
        pronoun = "who" if head[2] == "p" else "that"
        if rng.random() < 0.6:  # subject relative: the verb agrees with the head noun
            v = self.verb(head[2], transitive=True)
            obj, _, _ = self.noun_phrase(v[4], depth)
            return [pronoun, self.verb_form(v, plural)] + obj
        # object relative: "the goat that the farmers feed"; the verb agrees with the inner subject
        for _ in range(50):
            sub = self.noun("pa")
            v = self.verb(sub[2], transitive=True)
            if head[2] in v[4]:
                break
        else:
            v = self.verb(head[2], transitive=True)
            obj, _, _ = self.noun_phrase(v[4], depth)
            return [pronoun, self.verb_form(v, plural)] + obj
        subj, _, sub_plural = self.noun_phrase(sub[2], depth + 1)
        return ["that"] + subj + [self.verb_form(v, sub_plural)]

    def verb_phrase(self, subject, plural, depth):
        rng = self.rng
        r = rng.random()
        if subject[2] not in "pa":  # things do nothing: "the pies are sweet", "... is in the oven"
            if r < 0.6:
                return [self.be(plural), self.adjectives.draw(rng)]
            return [self.be(plural)] + self.prepositional_phrase(depth + 1)
        if r < 0.15:
            return [self.be(plural), self.adjectives.draw(rng)]
        transitive = r < 0.8
        v = self.verb(subject[2], transitive=transitive)
        words = [self.verb_form(v, plural)]
        if v[4] is not None:
            obj, _, _ = self.noun_phrase(v[4], depth)
            words += obj
        if rng.random() < 0.25:
            words += self.prepositional_phrase(depth + 1)
        return words

    def sentence(self):
        rng = self.rng
        r = rng.random()
        if r < 0.08:  # "there are two cows in the barn ."
            np_words, n, plural = self.noun_phrase("paof", 1)
            words = ["there", self.be(plural)] + np_words + self.prepositional_phrase(1)
        elif r < 0.16 and not self.past:  # "does the farmer feed the goats ?"
            subj, n, plural = self.noun_phrase("pa", 1)
            v = self.verb(n[2], transitive=True)
            obj, _, _ = self.noun_phrase(v[4], 1)
            words = ["does" if not plural else "do"] + subj + [v[0]] + obj + ["?"]
            return self.finish(words)
        else:
            subj, n, plural = self.noun_phrase("pa" if rng.random() < 0.85 else "paof", 0)
            words = []
            if rng.random() < 0.15:
                words += self.adverbs[rng.randrange(len(self.adverbs))].split() + [","]
            words += subj + self.verb_phrase(n, plural, 0)
            if rng.random() < 0.15:
                if plural:
                    pronoun = "they"
                elif n[2] == "p":
                    pronoun = PRONOUNS.get(n[0]) or ("he" if rng.random() < 0.5 else "she")
                else:
                    pronoun = "it"
                words += ["and", pronoun] + self.verb_phrase(n, plural, 1)
        return self.finish(words + ["."])

    @staticmethod
    def finish(words):
        text = " ".join(words)
        for mark in (" .", " ?", " ,"):
            text = text.replace(mark, mark[1:])
        return text[0].upper() + text[1:]


def generate_corpus(documents, seed):
    """A list of documents, each a list of sentences (strings)."""
    rng = random.Random(seed)
    out = []
    for _ in range(documents):
        topic = TOPIC_NAMES[rng.randrange(len(TOPIC_NAMES))]
        g = Grammar(rng, topic)
        count = rng.randint(20, 140)
        out.append([g.sentence() for _ in range(count)])
    return out


def write_corpus(path, documents):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join("\n".join(doc) for doc in documents))
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# 2. The tokenizer: normalization, pre-tokens, byte-pair merges
# ---------------------------------------------------------------------------------------------
_PRETOKEN = re.compile("\u2581?(?:[\\w\u0300-\u036f]+|[^\\w\\s\u2581]+)")
_PRETOKEN_OR_LF = re.compile("\n|" + _PRETOKEN.pattern)
_SPACES = re.compile(r"\s+")
_SPACES_NOT_LF = re.compile(r"[^\S\n]+")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")  # Cc that is not \s


def read_text(path):
    """The text of a UTF-8 file; a named DataError for a missing, binary or non-UTF-8 file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})")
    if b"\0" in raw:
        raise DataError(f"{path}: binary file (NUL byte at offset {raw.index(bytes(1))}); "
                        "give UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})")
    return text.lstrip("\ufeff")


def normalize_line(line):
    """NFC; control characters that are not whitespace dropped; "▁" and every whitespace run
    become one space; stripped."""
    if not unicodedata.is_normalized("NFC", line):
        line = unicodedata.normalize("NFC", line)
    line = _CONTROL.sub("", line)
    return _SPACES.sub(" ", line.replace(SPACE, " ")).strip()


def normalize_text(text):
    """normalize_line on every line at once; lines end with LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return _CONTROL.sub("", text).replace(SPACE, " ")


def text_documents(text):
    """Documents (lists of normalized non-empty lines), split at blank lines."""
    docs, current = [], []
    text = _SPACES_NOT_LF.sub(" ", normalize_text(text))
    for line in text.split("\n"):
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            docs.append(current)
            current = []
    if current:
        docs.append(current)
    return docs


def pretoken_stream(lines):
    """The pre-tokens of normalized lines, each line followed by "\n": a word or a run of
    punctuation, with the space before it written "▁". A line starts with one (as in
    SentencePiece: a word is the same piece at the start of a line and in it); runs longer
    than MAX_CHUNK characters are cut (the pieces after the first have no marker)."""
    joined = SPACE + ("\n" + SPACE).join(lines).replace(" ", SPACE) + "\n"
    toks = _PRETOKEN_OR_LF.findall(joined)
    if toks and max(map(len, toks)) > MAX_CHUNK:
        toks = [t[i:i + MAX_CHUNK] for t in toks for i in range(0, len(t), MAX_CHUNK)]
    return toks


def pretokens(line):
    """The pre-tokens of one normalized line: "".join(pretokens(l)).replace("▁", " ") is
    " " + l."""
    return pretoken_stream([line])[:-1]


def learn_vocab(texts, size, docs=None):
    """Learn a vocabulary of at most `size` pieces from a list of strings (or from documents of
    normalized lines, `docs`). Returns a dict (the vocab.json content) and a list of notes for
    the user."""
    if size <= len(SPECIAL_TOKENS):
        raise DataError(f"--size {size} leaves no room for text pieces: the {len(SPECIAL_TOKENS)} "
                        f"special tokens take ids 0..{len(SPECIAL_TOKENS) - 1}; give at least "
                        f"{len(SPECIAL_TOKENS) + 1}")
    counts = collections.Counter()
    for text in texts:
        counts.update(pretoken_stream([line for doc in text_documents(text) for line in doc]))
    if docs is not None:
        counts.update(pretoken_stream([line for doc in docs for line in doc]))
    counts.pop("\n", None)
    counts = dict(counts)
    if not counts:
        raise DataError("the text has no characters to learn from (empty or only whitespace)")
    char_counts = {}
    for tok, c in counts.items():
        for ch in tok:
            char_counts[ch] = char_counts.get(ch, 0) + c
    alphabet = sorted(char_counts, key=lambda ch: (-char_counts[ch], ch))
    room = size - len(SPECIAL_TOKENS)
    notes = []
    if SPACE in alphabet:  # the marker first: dropping it would lose every word boundary
        alphabet.remove(SPACE)
        alphabet.insert(0, SPACE)
    if len(alphabet) > room:
        dropped = len(alphabet) - room
        notes.append(f"{dropped} rare characters of {len(alphabet)} do not fit in --size {size} "
                     "and encode as [UNK]")
        alphabet = alphabet[:room]
    pieces = list(SPECIAL_TOKENS) + alphabet
    known = set(alphabet)
    if len(counts) > MAX_TRAINING_WORDS:
        notes.append(f"merges learned from the {MAX_TRAINING_WORDS} most frequent of "
                     f"{len(counts)} distinct words (the characters from all)")
        kept = sorted(counts, key=lambda w: (-counts[w], w))[:MAX_TRAINING_WORDS]
        counts = {w: counts[w] for w in kept}
    merges = _learn_merges(counts, known, size - len(pieces), pieces)
    if len(pieces) < size:
        notes.append(f"the vocabulary has {len(pieces)} pieces, fewer than --size {size}: "
                     "no pair of pieces occurs twice more in the text")
    vocab = {
        "format": VOCAB_FORMAT,
        "version": 1,
        "special_tokens": {name: i for i, name in enumerate(SPECIAL_TOKENS)},
        "space_marker": SPACE,
        "max_chunk": MAX_CHUNK,
        "normalization": "NFC; control characters other than whitespace dropped; U+2581 and "
                         "whitespace runs -> one space; lines stripped",
        "pieces": pieces,
        "merges": merges,
    }
    return vocab, notes


def _learn_merges(counts, known, room, pieces):
    """Byte-pair-encoding merges: repeatedly join the most frequent adjacent pair (ties: the
    smallest pair as strings) until `room` new pieces exist or no pair occurs twice. Appends the
    new pieces to `pieces`; returns the merges in order."""
    words = []  # [symbols, count]; an unknown character is None and never merges
    for tok in sorted(counts):
        words.append([[ch if ch in known else None for ch in tok], counts[tok]])
    pair_count, where = {}, {}
    for wi, (sym, c) in enumerate(words):
        for a, b in zip(sym, sym[1:]):
            if a is not None and b is not None:
                pair_count[a, b] = pair_count.get((a, b), 0) + c
                where.setdefault((a, b), set()).add(wi)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges, existing = [], set(pieces)
    added = 0
    while added < room and heap:
        negc, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -negc:
            continue  # stale entry
        if -negc < 2:
            break
        merged = a + b
        merges.append([a, b])
        if merged not in existing:
            existing.add(merged)
            pieces.append(merged)
            added += 1
        changed = set()
        for wi in where.pop((a, b), ()):
            sym, c = words[wi]
            for p in zip(sym, sym[1:]):
                if p[0] is not None and p[1] is not None:
                    pair_count[p] -= c
                    changed.add(p)
                    s = where.get(p)
                    if s is not None:
                        s.discard(wi)
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            words[wi][0] = out
            for p in zip(out, out[1:]):
                if p[0] is not None and p[1] is not None:
                    pair_count[p] = pair_count.get(p, 0) + c
                    changed.add(p)
                    where.setdefault(p, set()).add(wi)
        pair_count.pop((a, b), None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p[0], p[1]))
            else:
                pair_count.pop(p, None)
    return merges


class Tokenizer:
    def __init__(self, vocab):
        if vocab.get("format") != VOCAB_FORMAT:
            raise DataError(f"not a {VOCAB_FORMAT} vocabulary (no \"format\": \"{VOCAB_FORMAT}\")")
        self.pieces = vocab["pieces"]
        if self.pieces[:len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise DataError(f"the vocabulary does not start with {SPECIAL_TOKENS}")
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.ranks = {(a, b): r for r, (a, b) in enumerate(vocab["merges"])}
        self.cache = {}

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                return cls(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a readable vocabulary ({e})")

    def __len__(self):
        return len(self.pieces)

    def encode_pretoken(self, tok):
        ids = self.cache.get(tok)
        if ids is not None:
            return ids
        sym = list(tok)
        ranks = self.ranks
        while len(sym) > 1:
            best, best_rank = None, None
            for p in zip(sym, sym[1:]):
                r = ranks.get(p)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = p, r
            if best is None:
                break
            a, b = best
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            sym = out
        get = self.ids.get
        ids = [get(s, UNK) for s in sym]
        if len(self.cache) < 1_000_000:
            self.cache[tok] = ids
        return ids

    def encode_line(self, line):
        """Ids of one already-normalized line."""
        out = []
        encode = self.encode_pretoken
        for tok in pretokens(line):
            out.extend(encode(tok))
        return out

    def encode(self, text):
        """Ids of any text, line breaks dropped (lines joined by a space)."""
        return self.encode_line(normalize_line(text))

    def decode(self, ids):
        parts = []
        for i in ids:
            i = int(i)
            if i == PAD:
                continue
            if i < 0:
                parts.append(f"{SPACE}[id {i}?]")
            elif i < len(SPECIAL_TOKENS):
                parts.append(f"{SPACE}{self.pieces[i]}" if i != UNK else self.pieces[i])
            elif i < len(self.pieces):
                parts.append(self.pieces[i])
            else:
                parts.append(f"{SPACE}[id {i}?]")
        text = "".join(parts).replace(SPACE, " ")
        return text[1:] if text.startswith(" ") else text


# ---------------------------------------------------------------------------------------------
# 3. Pre-training examples: sentence pairs, BERT masking, the .npz columns, baselines
# ---------------------------------------------------------------------------------------------
def _truncate_pair(a, b, max_tokens, rng):
    """Shorten the longer of a and b (from its front or back, at random) until both fit."""
    while len(a) + len(b) > max_tokens:
        longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
        excess = len(a) + len(b) - max_tokens
        k = max(1, min(excess, len(longer) - len(shorter)))
        if rng.random() < 0.5:
            del longer[:k]
        else:
            del longer[len(longer) - k:]


def make_pairs(docs, max_length, rng, short_probability=0.5):
    """(A ids, B ids, is_next) from documents of tokenized sentences, in BERT's manner: collect
    sentences up to a target length (the maximum, or with probability `short_probability` a
    uniform draw from 2 up to it), split them into A and B at a random sentence; half the time
    (always for a single-sentence chunk) B is replaced by text from another document and the
    unused sentences go back to the stream."""
    max_tokens = max_length - 3
    docs = [[s for s in doc if s] for doc in docs]
    docs = [d for d in docs if d]
    out = []
    total_sentences = sum(len(d) for d in docs)
    if total_sentences < 2:
        return out

    def draw_target():
        if rng.random() < short_probability:
            return int(rng.integers(2, max_tokens + 1))
        return max_tokens

    def random_b(d_index, target_b, avoid):
        """Sentences from another document (or, with a single document, from a place in this
        one that does not follow A), at least target_b tokens."""
        if len(docs) > 1:
            other = int(rng.integers(0, len(docs) - 1))
            if other >= d_index:
                other += 1
            doc, start = docs[other], int(rng.integers(0, len(docs[other])))
        else:
            doc = docs[d_index]
            choices = [j for j in range(len(doc)) if j not in avoid]
            if not choices:
                return None
            start = choices[int(rng.integers(0, len(choices)))]
        b = []
        for s in doc[start:]:
            b.extend(s)
            if len(b) >= target_b or len(docs) == 1:
                break
        return b

    for d_index, doc in enumerate(docs):
        target = draw_target()
        chunk, chunk_len, i = [], 0, 0
        while i < len(doc):
            chunk.append(i)
            chunk_len += len(doc[i])
            if i == len(doc) - 1 or chunk_len >= target:
                a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                a = [t for j in chunk[:a_end] for t in doc[j]]
                b = None
                if len(chunk) == 1 or rng.random() < 0.5:
                    avoid = set(chunk[:a_end]) | {chunk[a_end - 1] + 1}
                    b = random_b(d_index, max(1, target - len(a)), avoid)
                    if b is not None:
                        is_next = 0
                        i -= len(chunk) - a_end  # the unused sentences go back
                if b is None:
                    if len(chunk) == 1:
                        b = None  # nothing follows and no other text: no example
                    else:
                        b = [t for j in chunk[a_end:] for t in doc[j]]
                        is_next = 1
                if b:
                    _truncate_pair(a, b, max_tokens, rng)
                    out.append((a, b, is_next))
                chunk, chunk_len = [], 0
                target = draw_target()
            i += 1
    return out


def mask_examples(pairs, max_length, vocab_len, rng, mask_fraction=0.15, max_predictions=None):
    """The npz columns for (A, B, is_next) pairs, with BERT masking: round(`mask_fraction` x the
    non-special positions) of each example (at least one) chosen uniformly; of those 80% ->
    [MASK], 10% -> a uniform random real token (ids 5..vocab_len-1), 10% kept. Also returns the
    per-position decision (0 none, 1 [MASK], 2 random, 3 kept) for tests.
    With `max_predictions` K, at most K positions are chosen per example (BERT's
    max_predictions_per_seq) and the masked-LM columns are gathered: mlm_positions, mlm_ids
    i32[N, K] and mlm_weights f32[N, K] (ascending positions, zero-padded) replace
    mlm_labels and mlm_weights f32[N, S]."""
    n = len(pairs)
    tokens = np.zeros((n, max_length), np.int32)
    segments = np.zeros((n, max_length), np.int32)
    lengths = np.zeros(n, np.int32)
    sentence = np.zeros(n, np.int32)
    for e, (a, b, is_next) in enumerate(pairs):
        row = [CLS] + a + [SEP] + b + [SEP]
        tokens[e, :len(row)] = row
        segments[e, len(a) + 2:len(row)] = 1
        lengths[e] = len(row)
        sentence[e] = is_next
    candidate = (tokens >= len(SPECIAL_TOKENS)) | (tokens == UNK)
    count = np.maximum(1, np.round(candidate.sum(1) * mask_fraction)).astype(np.int64)
    if max_predictions is not None:
        count = np.minimum(count, max_predictions)
    keys = rng.random((n, max_length))
    keys[~candidate] = 2.0  # never chosen
    rank = np.empty((n, max_length), np.int64)
    np.put_along_axis(rank, np.argsort(keys, axis=1, kind="stable"),
                      np.arange(max_length)[None, :].repeat(n, 0), axis=1)
    chosen = (rank < count[:, None]) & candidate
    r = rng.random((n, max_length))
    decision = np.zeros((n, max_length), np.int8)
    decision[chosen] = 3
    decision[chosen & (r < 0.8)] = 1
    decision[chosen & (r >= 0.9)] = 2
    labels = np.where(chosen, tokens, 0).astype(np.int32)
    weights = chosen.astype(np.float32)
    random_tokens = rng.integers(len(SPECIAL_TOKENS), vocab_len, size=(n, max_length))
    tokens = np.where(decision == 1, MASK, tokens)
    tokens = np.where(decision == 2, random_tokens, tokens).astype(np.int32)
    columns = {"tokens": tokens, "segments": segments, "lengths": lengths,
               "mlm_labels": labels, "mlm_weights": weights, "sentence_labels": sentence}
    if max_predictions is not None:
        k = max_predictions
        first = np.argsort(~chosen, axis=1, kind="stable")[:, :k]  # chosen positions, ascending
        if first.shape[1] < k:
            first = np.pad(first, ((0, 0), (0, k - first.shape[1])))
        real = np.arange(k)[None, :] < count[:, None]
        positions = np.where(real, first, 0).astype(np.int32)
        del columns["mlm_labels"]
        columns["mlm_positions"] = positions
        columns["mlm_ids"] = np.where(real, np.take_along_axis(labels, positions, 1),
                                      0).astype(np.int32)
        columns["mlm_weights"] = real.astype(np.float32)
    return columns, decision


def dense_mlm(columns):
    """(mlm_labels, mlm_weights) as [N, S] arrays, from either layout."""
    if "mlm_positions" not in columns:
        return columns["mlm_labels"], columns["mlm_weights"]
    n, s = columns["tokens"].shape
    labels = np.zeros((n, s), np.int32)
    weights = np.zeros((n, s), np.float32)
    rows, slots = np.nonzero(columns["mlm_weights"] > 0)
    pos = columns["mlm_positions"][rows, slots]
    labels[rows, pos] = columns["mlm_ids"][rows, slots]
    weights[rows, pos] = 1.0
    return labels, weights


def original_tokens(columns):
    """The unmasked input: masked positions restored from mlm_labels (or mlm_ids)."""
    labels, weights = dense_mlm(columns)
    return np.where(weights > 0, labels, columns["tokens"])


def baselines(train, evaluation):
    """Unigram and left-bigram MLM accuracy on `evaluation`'s masked positions, both counted
    from `train`'s unmasked text. Unigram: always the most frequent non-special token. Bigram:
    the most frequent token after the left neighbour as the model sees it (the masked input;
    a left neighbour never seen in training text, e.g. [MASK], falls back to the unigram)."""
    orig = original_tokens(train).astype(np.int64)
    lengths = train["lengths"]
    s = orig.shape[1]
    valid = np.arange(s)[None, :] < lengths[:, None]
    real = valid & (orig >= len(SPECIAL_TOKENS))
    unigram = int(np.bincount(orig[real]).argmax())
    left = np.concatenate([np.full((orig.shape[0], 1), PAD), orig[:, :-1]], axis=1)
    span = int(max(orig.max(), evaluation["tokens"].max(), 1)) + 1
    codes = left[real] * span + orig[real]
    uniq, counts = np.unique(codes, return_counts=True)
    prev, nxt = uniq // span, uniq % span
    order = np.lexsort((nxt, -counts, prev))  # per left token: the most frequent, then smallest
    prev, nxt = prev[order], nxt[order]
    first = np.ones(len(prev), bool)
    first[1:] = prev[1:] != prev[:-1]
    table = np.full(span, unigram, np.int64)
    table[prev[first]] = nxt[first]
    eval_labels, eval_weights = dense_mlm(evaluation)
    m = eval_weights > 0
    truth = eval_labels[m]
    eleft = np.concatenate([np.full((m.shape[0], 1), PAD), evaluation["tokens"][:, :-1]],
                           axis=1)[m]
    total = max(1, truth.size)
    return {"masked_positions": int(truth.size), "unigram_token": unigram,
            "unigram_accuracy": float((truth == unigram).sum() / total),
            "bigram_accuracy": float((table[eleft] == truth).sum() / total)}


def length_summary(lengths):
    if len(lengths) == 0:
        return "no examples"
    q = np.percentile(lengths, [0, 25, 50, 75, 100])
    text = "min %d, q1 %d, median %d, q3 %d, max %d, mean %.1f" % (*q, lengths.mean())
    edges = [0, 16, 32, 64, 96, 127, 10**9]
    hist = []
    for lo, hi in zip(edges, edges[1:]):
        c = int(((lengths > lo) & (lengths <= hi)).sum())
        if c:
            hist.append(f"{lo + 1}-{hi}: {c}" if hi < 10**9 else f">{lo}: {c}")
    return text + "; " + ", ".join(hist)


def encode_documents(docs_text, tokenizer):
    """Documents of normalized lines as documents of id lists (one list per line)."""
    out = []
    cache, encode = tokenizer.cache, tokenizer.encode_pretoken
    for doc in docs_text:
        lines, current = [], []
        for tok in pretoken_stream(doc):
            if tok == "\n":
                lines.append(current)
                current = []
            else:
                ids = cache.get(tok)
                current += ids if ids is not None else encode(tok)
        out.append(lines)
    return out


def split_documents(docs, eval_fraction, rng):
    if eval_fraction <= 0:
        return docs, []
    if not 0 < eval_fraction < 1:
        raise DataError(f"--eval-fraction {eval_fraction} is not between 0 and 1")
    if len(docs) < 2:
        raise DataError(f"an eval split needs at least 2 documents (blank-line separated); "
                        f"the text has {len(docs)}")
    order = rng.permutation(len(docs))
    n_eval = min(len(docs) - 1, max(1, int(round(len(docs) * eval_fraction))))
    eval_set = set(order[:n_eval].tolist())
    return ([d for i, d in enumerate(docs) if i not in eval_set],
            [d for i, d in enumerate(docs) if i in eval_set])


def build(docs_text, tokenizer, max_length, seed, eval_fraction=0.0, short_probability=0.5,
          vocab_size=8192, max_predictions=None):
    """Columns of the training (and eval) examples; also the decisions, for tests."""
    if max_length < 5:
        raise DataError(f"--max-length {max_length} is below 5 ([CLS] A [SEP] B [SEP])")
    if len(tokenizer) > vocab_size:
        raise DataError(f"the vocabulary has {len(tokenizer)} pieces, more than the model's "
                        f"--vocab-size {vocab_size}")
    rng = np.random.default_rng(seed)
    docs = encode_documents(docs_text, tokenizer)
    train_docs, eval_docs = split_documents(docs, eval_fraction, rng)
    results = []
    for part in (train_docs, eval_docs):
        if not part:
            results.append(None)
            continue
        pairs = make_pairs(part, max_length, rng, short_probability)
        if not pairs:
            raise DataError("the text gives no examples: it needs at least two non-empty lines")
        order = rng.permutation(len(pairs))
        pairs = [pairs[i] for i in order]
        columns, decision = mask_examples(pairs, max_length, len(tokenizer), rng,
                                          max_predictions=max_predictions)
        top = int(max(columns["tokens"].max(), dense_mlm(columns)[0].max()))
        if top >= vocab_size:
            raise DataError(f"token id {top} is not below --vocab-size {vocab_size}")
        results.append((columns, decision))
    return results[0], results[1]


def save_npz(path, columns):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    np.savez(path, **columns)  # stored, not deflated: faster to write and to read


def report(name, columns):
    n = len(columns["lengths"])
    masked = int((dense_mlm(columns)[1] > 0).sum())
    print(f"{name}: {n} examples, lengths {length_summary(columns['lengths'])}")
    print(f"{name}: {masked} masked positions ({masked / max(1, int(columns['lengths'].sum()) - 3 * n):.1%} "
          f"of the non-special positions), {int(columns['sentence_labels'].sum())} of {n} "
          f"B-follows-A pairs")


def print_baselines(train, evaluation, eval_name, tokenizer=None):
    b = baselines(train, evaluation)
    token = str(b["unigram_token"])
    if tokenizer is not None and b["unigram_token"] < len(tokenizer):
        token += f" {tokenizer.pieces[b['unigram_token']]!r}"
    print(f"baselines on {eval_name} ({b['masked_positions']} masked positions): unigram MLM "
          f"accuracy {b['unigram_accuracy']:.4f} (always token {token}), "
          f"bigram (left neighbour) MLM accuracy {b['bigram_accuracy']:.4f}")
    return b


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def cmd_corpus(args):
    if args.documents < 1:
        raise DataError("--documents must be at least 1")
    docs = generate_corpus(args.documents, args.seed)
    write_corpus(args.out, docs)
    print(f"corpus: {len(docs)} documents, {sum(map(len, docs))} sentences, "
          f"{sum(len(s.split()) for d in docs for s in d)} words -> {args.out}")
    return docs


def cmd_vocab(args):
    if args.size > args.model_vocab:
        raise DataError(f"--size {args.size} exceeds the model's vocabulary {args.model_vocab} "
                        "(--model-vocab)")
    if getattr(args, "docs", None) is not None:  # `all`: the corpus just written, as read back
        vocab, notes = learn_vocab([], args.size, docs=args.docs)
    else:
        vocab, notes = learn_vocab([read_text(p) for p in args.text], args.size)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=0)
    for note in notes:
        print(f"vocab: note: {note}")
    print(f"vocab: {len(vocab['pieces'])} pieces ({len(SPECIAL_TOKENS)} special, "
          f"{len(vocab['merges'])} merges) -> {args.out}")


def cmd_encode(args):
    tokenizer = Tokenizer.load(args.vocab)
    docs = getattr(args, "docs", None)  # `all`: the corpus just written, as read back
    if docs is None:
        docs = []
        for path in args.text:
            docs.extend(text_documents(read_text(path)))
    if args.eval_fraction > 0 and not args.eval_out:
        raise DataError("--eval-fraction needs --eval-out")
    if not 0 <= args.short_probability <= 1:
        raise DataError(f"--short-probability {args.short_probability} is not a probability (0 to 1)")
    if not any(any(line.strip() for line in doc) if isinstance(doc, list) else str(doc).strip() for doc in docs):
        raise DataError("the text has no sentences (an empty or blank file)")
    train, evaluation = build(docs, tokenizer, args.max_length, args.seed, args.eval_fraction,
                              args.short_probability, args.vocab_size, args.max_predictions)
    save_npz(args.out, train[0])
    report("train", train[0])
    if evaluation is not None:
        save_npz(args.eval_out, evaluation[0])
        report("eval", evaluation[0])
        print_baselines(train[0], evaluation[0], "the eval split", tokenizer)
    else:
        print_baselines(train[0], train[0], "the training examples (no eval split)", tokenizer)
    print(f"wrote {args.out}" + (f" and {args.eval_out}" if evaluation is not None else ""))


def cmd_all(args):
    os.makedirs(args.dir, exist_ok=True)
    corpus = os.path.join(args.dir, "corpus.txt")
    vocab = os.path.join(args.dir, "vocab.json")
    # The grammar's sentences are already normalized (ASCII, single spaces): reading corpus.txt
    # back gives the same documents (a test checks it), so vocab and encode take them directly.
    docs = cmd_corpus(argparse.Namespace(out=corpus, documents=args.documents, seed=args.seed))
    cmd_vocab(argparse.Namespace(text=[corpus], size=args.size, out=vocab,
                                 model_vocab=args.vocab_size, docs=docs))
    cmd_encode(argparse.Namespace(text=[corpus], vocab=vocab, max_length=args.max_length,
                                  docs=docs,
                                  seed=args.seed, out=os.path.join(args.dir, "train.npz"),
                                  eval_fraction=args.eval_fraction,
                                  eval_out=os.path.join(args.dir, "eval.npz"),
                                  short_probability=args.short_probability,
                                  vocab_size=args.vocab_size,
                                  max_predictions=args.max_predictions))


def _load_columns(path):
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})")
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive of columns")
    with z:
        return {k: z[k] for k in z.files}


def cmd_baseline(args):
    train = _load_columns(args.data)
    evaluation = _load_columns(args.eval) if args.eval else train
    for path, columns in ((args.data, train), (args.eval or args.data, evaluation)):
        missing = [c for c in ("tokens", "lengths") if c not in columns]
        missing += [] if "mlm_labels" in columns or "mlm_ids" in columns else ["mlm_labels or mlm_ids"]
        if missing:
            raise DataError(f"{path}: not a bert_data.py file: no column {', '.join(missing)}")
    print_baselines(train, evaluation, args.eval or args.data)


def cmd_decode(args):
    print(Tokenizer.load(args.vocab).decode(args.ids))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="BERT pre-training data for ttfc (IR-specs/bert-data.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    def positive(text):
        v = int(text)
        if v < 1:
            raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
        return v

    def common_encode(p):
        p.add_argument("--max-length", type=positive, default=128,
                       help="S: [CLS] A [SEP] B [SEP] padded to this (default 128)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--short-probability", type=float, default=0.5,
                       help="chance an example aims at a random length below --max-length "
                            "(default 0.5)")
        p.add_argument("--vocab-size", type=positive, default=8192,
                       help="the model's vocabulary: every id must be below it (default 8192)")
        p.add_argument("--max-predictions", type=positive, default=None, metavar="K",
                       help="at most K masked positions per example, written gathered: "
                            "mlm_positions, mlm_ids i32[N, K], mlm_weights f32[N, K] instead of "
                            "mlm_labels, mlm_weights [N, S] (examples/bert_tiny.ttir: K = 20)")

    p = sub.add_parser("corpus", help="write a synthetic grammar corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--documents", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_corpus)

    p = sub.add_parser("vocab", help="learn a subword vocabulary from text files")
    p.add_argument("--text", action="append", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model-vocab", type=positive, default=8192,
                   help="the model's vocabulary, an upper bound for --size (default 8192)")
    p.set_defaults(run=cmd_vocab)

    p = sub.add_parser("encode", help="build masked pre-training examples as .npz")
    p.add_argument("--text", action="append", required=True)
    p.add_argument("--vocab", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--eval-fraction", type=float, default=0.0,
                   help="fraction of documents held out for --eval-out (default 0)")
    p.add_argument("--eval-out")
    common_encode(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("all", help="corpus -> vocab -> encode into a directory")
    p.add_argument("--dir", required=True)
    p.add_argument("--documents", type=int, default=2000)
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--eval-fraction", type=float, default=0.1)
    common_encode(p)
    p.set_defaults(run=cmd_all)

    p = sub.add_parser("baseline", help="unigram and bigram MLM baselines of existing files")
    p.add_argument("--data", required=True)
    p.add_argument("--eval")
    p.set_defaults(run=cmd_baseline)

    p = sub.add_parser("decode", help="the text of token ids")
    p.add_argument("--vocab", required=True)
    p.add_argument("ids", nargs="+", type=int)
    p.set_defaults(run=cmd_decode)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except DataError as e:
        print(f"bert_data.py {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an output that cannot be written
        print(f"bert_data.py {args.command}: error: {e.filename or ''}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
