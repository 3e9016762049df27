#!/usr/bin/env python3
"""Tests of tools/bert_data.py (corpus, tokenizer, masking, .npz columns, baselines, hostile
inputs). Plain unittest: `python3 tools/test_bert_data.py` (NumPy needed, no pytest)."""
import contextlib
import io
import os
import random
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_data as bd  # noqa: E402

COLUMNS = {"tokens": np.int32, "segments": np.int32, "lengths": np.int32,
           "mlm_labels": np.int32, "mlm_weights": np.float32, "sentence_labels": np.int32}


def run_cli(*argv):
    """(exit status, stdout, stderr) of bert_data.main(argv)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = bd.main(list(argv))
        except SystemExit as e:  # argparse errors
            status = e.code
    return status, out.getvalue(), err.getvalue()


def corpus_text(documents, seed):
    return "\n\n".join("\n".join(d) for d in bd.generate_corpus(documents, seed)) + "\n"


class Fixture:
    """One corpus, vocabulary and example set shared by the tests (built once)."""
    _built = None

    @classmethod
    def get(cls):
        if cls._built is None:
            text = corpus_text(300, 7)
            vocab, _ = bd.learn_vocab([text], 8192)
            tok = bd.Tokenizer(vocab)
            docs = bd.text_documents(text)
            (train, train_decision), (evaluation, _) = bd.build(
                docs, tok, 128, seed=3, eval_fraction=0.2)
            cls._built = dict(text=text, vocab=vocab, tok=tok, docs=docs, train=train,
                              decision=train_decision, eval=evaluation)
        return cls._built


class CorpusTests(unittest.TestCase):
    def test_deterministic_per_seed(self):
        self.assertEqual(corpus_text(20, 1), corpus_text(20, 1))
        self.assertNotEqual(corpus_text(20, 1), corpus_text(20, 2))

    def test_written_text_reads_back_as_generated(self):
        """`all` hands the generated documents to vocab and encode instead of reading back."""
        docs = bd.generate_corpus(40, 3)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.txt")
            bd.write_corpus(path, docs)
            self.assertEqual(bd.text_documents(bd.read_text(path)), docs)

    def test_shape(self):
        docs = bd.generate_corpus(30, 0)
        self.assertEqual(len(docs), 30)
        for doc in docs:
            self.assertGreaterEqual(len(doc), 2)
            for s in doc:
                self.assertTrue(s[0].isupper(), s)
                self.assertIn(s[-1], ".?", s)
                self.assertNotIn("\n", s)

    def test_agreement(self):
        """Present tense: a singular determiner is never directly followed by a plural noun, and
        "there is"/"there are" agree with the noun phrase after them."""
        plural_nouns = {n[1] for t in bd.TOPICS.values() for n in t["nouns"]} | \
            {n[1] for n in bd.GENERAL_NOUNS}
        singular_nouns = {n[0] for t in bd.TOPICS.values() for n in t["nouns"]} | \
            {n[0] for n in bd.GENERAL_NOUNS}
        only_plural = plural_nouns - singular_nouns
        for doc in bd.generate_corpus(50, 4):
            for s in doc:
                words = s.lower().rstrip(".?").replace(",", "").split()
                for a, b in zip(words, words[1:]):
                    if a in ("a", "an", "this", "every", "one"):
                        self.assertNotIn(b, only_plural, s)
                    if a in ("these", "those", "many", "two", "three"):
                        self.assertNotIn(b, singular_nouns - plural_nouns, s)
                    if a == "a":
                        self.assertNotIn(b[0], "aeiou", s)
                    if a == "an":
                        self.assertIn(b[0], "aeiou", s)

    def test_learnable_structure(self):
        """The bigram baseline beats the unigram one by a clear margin on held-out documents."""
        f = Fixture.get()
        b = bd.baselines(f["train"], f["eval"])
        self.assertGreater(b["masked_positions"], 1000)
        self.assertGreater(b["bigram_accuracy"], b["unigram_accuracy"] + 0.05, b)
        self.assertLess(b["unigram_accuracy"], 0.2, b)


class TokenizerTests(unittest.TestCase):
    def roundtrip(self, text, size=8192):
        vocab, _ = bd.learn_vocab([text], size)
        tok = bd.Tokenizer(vocab)
        for doc in bd.text_documents(text):
            for line in doc:
                ids = tok.encode_line(line)
                self.assertNotIn(bd.UNK, ids, line)
                self.assertEqual(tok.decode(ids), line)
        return tok

    def test_special_ids(self):
        tok = Fixture.get()["tok"]
        self.assertEqual(tok.pieces[:5], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        self.assertEqual((bd.PAD, bd.UNK, bd.CLS, bd.SEP, bd.MASK), (0, 1, 2, 3, 4))
        self.assertEqual(len(set(tok.pieces)), len(tok.pieces))

    def test_roundtrip_corpus(self):
        self.roundtrip(corpus_text(30, 5))

    def test_roundtrip_unicode(self):
        text = ("Crème brûlée, naïve café — 東京は大きい都市です。\n"
                "Emoji 🙂👍🏽 and math ∀x∈ℝ: x² ≥ 0 ; tabs\tand   spaces\n\n"
                "ΑΒΓ αβγ ЖЗИ \"quotes\" (parens) [brackets] {braces} ``code`` --flag=1\n"
                "e\u0301 (a decomposed é) and \u2581 the marker itself\n")
        tok = self.roundtrip(text)
        self.assertEqual(tok.decode(tok.encode("tabs\tand   spaces ")), "tabs and spaces")
        self.assertEqual(bd.normalize_line("e\u0301\u2581x\r\x07"), "\u00e9 x")
        self.assertEqual(bd.normalize_line("a\x0cb\x1b[0mc\u2028 d\x85"), "a b[0mc d")
        self.assertEqual(bd.text_documents("a\x0cb\x1b[0mc\u2028 d\x85\r\n\r\nx\ty"),
                         [["a b[0mc d"], ["x y"]])

    def test_roundtrip_real_text(self):
        readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
        if os.path.exists(readme):
            with open(readme, encoding="utf-8") as f:
                self.roundtrip(f.read(), size=1000)

    def test_small_size_uses_unk(self):
        text = "abc abd abe xyz qqq\nzzz yyy\n"
        vocab, notes = bd.learn_vocab([text], 8)
        self.assertEqual(len(vocab["pieces"]), 8)
        self.assertTrue(any("[UNK]" in n for n in notes))
        tok = bd.Tokenizer(vocab)
        self.assertIn(bd.UNK, tok.encode("xyz"))

    def test_vocab_smaller_than_asked_is_said(self):
        _, notes = bd.learn_vocab(["the cat sat\n"], 8192)
        self.assertTrue(any("fewer than --size 8192" in n for n in notes))

    def test_merges_learn_words(self):
        tok = Fixture.get()["tok"]
        ids = tok.encode("The farmers feed the hungry goats.")
        self.assertLessEqual(len(ids), 8)  # whole words are single pieces

    def test_deterministic(self):
        text = corpus_text(10, 2)
        self.assertEqual(bd.learn_vocab([text], 300), bd.learn_vocab([text], 300))


class ExampleTests(unittest.TestCase):
    def test_columns(self):
        f = Fixture.get()
        for cols in (f["train"], f["eval"]):
            self.assertEqual(set(cols), set(COLUMNS))
            n = len(cols["lengths"])
            for name, dtype in COLUMNS.items():
                self.assertEqual(cols[name].dtype, dtype, name)
                self.assertEqual(cols[name].shape[0], n, name)
                if name not in ("lengths", "sentence_labels"):
                    self.assertEqual(cols[name].shape, (n, 128), name)

    def test_layout(self):
        """[CLS] A [SEP] B [SEP], zero padding, segments, lengths >= 5 and variable."""
        f = Fixture.get()
        cols = f["train"]
        orig = bd.original_tokens(cols)
        lengths = cols["lengths"]
        self.assertGreaterEqual(lengths.min(), 5)
        self.assertLessEqual(lengths.max(), 128)
        self.assertGreater(len(np.unique(lengths)), 50)
        self.assertGreater((lengths < 128).mean(), 0.3)
        for e in range(len(lengths)):
            n = lengths[e]
            row, seg = orig[e], cols["segments"][e]
            self.assertEqual(row[0], bd.CLS)
            seps = np.flatnonzero(row[:n] == bd.SEP)
            self.assertEqual(len(seps), 2)
            self.assertEqual(seps[1], n - 1)
            self.assertGreaterEqual(seps[0], 2)
            self.assertGreaterEqual(seps[1] - seps[0], 2)
            self.assertTrue((seg[:seps[0] + 1] == 0).all())
            self.assertTrue((seg[seps[0] + 1:n] == 1).all())
            for name in ("tokens", "segments", "mlm_labels", "mlm_weights"):
                self.assertTrue((cols[name][e, n:] == 0).all(), name)
            self.assertFalse((row[1:n] == bd.CLS).any())
            self.assertFalse((row[1:n] == bd.PAD).any())

    def test_sentence_labels_balanced_and_true(self):
        f = Fixture.get()
        labels = f["train"]["sentence_labels"]
        self.assertTrue(set(np.unique(labels)) <= {0, 1})
        self.assertTrue(0.35 < labels.mean() < 0.6, labels.mean())
        # a positive pair is consecutive text of one document
        tok, text = f["tok"], " ".join(f["text"].split())
        orig = bd.original_tokens(f["train"])
        checked = 0
        for e in np.flatnonzero(labels == 1)[:200]:
            row = orig[e, :f["train"]["lengths"][e]]
            sep = int(np.flatnonzero(row == bd.SEP)[0])
            a, b = tok.decode(row[1:sep]), tok.decode(row[sep + 1:-1])
            if len(row) < 128:  # not truncated
                self.assertIn(a + " " + b, text)
                checked += 1
        self.assertGreater(checked, 20)

    def test_special_tokens_never_masked(self):
        f = Fixture.get()
        cols = f["train"]
        orig = bd.original_tokens(cols)
        chosen = cols["mlm_weights"] > 0
        self.assertFalse(np.isin(orig[chosen], [bd.PAD, bd.CLS, bd.SEP, bd.MASK]).any())
        special = np.isin(orig, [bd.PAD, bd.CLS, bd.SEP])
        self.assertTrue((cols["tokens"][special] == orig[special]).all())
        self.assertFalse(chosen[special].any())

    def test_labels_weights_consistent(self):
        f = Fixture.get()
        for cols in (f["train"], f["eval"]):
            w, lab = cols["mlm_weights"], cols["mlm_labels"]
            self.assertTrue(np.isin(w, [0.0, 1.0]).all())
            self.assertTrue(((w > 0) == (lab > 0)).all())
            self.assertGreaterEqual((w > 0).sum(1).min(), 1)
            # masked count per example is round(15% of the non-special positions), at least 1
            real = cols["lengths"] - 3
            expect = np.maximum(1, np.round(real * 0.15))
            self.assertTrue(((w > 0).sum(1) == expect).all())
            self.assertTrue((cols["tokens"] < len(f["tok"])).all())
            self.assertTrue((lab < len(f["tok"])).all())

    def test_masking_ratios(self):
        """80% [MASK] / 10% random / 10% kept, statistically, on ~40k masked positions."""
        f = Fixture.get()
        cols, decision = f["train"], f["decision"]
        chosen = cols["mlm_weights"] > 0
        n = int(chosen.sum())
        self.assertGreater(n, 30000)
        d = decision[chosen]
        self.assertTrue(((decision > 0) == chosen).all())
        tol = 4 * np.sqrt(0.1 * 0.9 / n)  # four standard deviations
        self.assertAlmostEqual((d == 1).mean(), 0.8, delta=4 * np.sqrt(0.16 / n))
        self.assertAlmostEqual((d == 2).mean(), 0.1, delta=tol)
        self.assertAlmostEqual((d == 3).mean(), 0.1, delta=tol)
        toks, labels = cols["tokens"], cols["mlm_labels"]
        self.assertTrue((toks[decision == 1] == bd.MASK).all())
        self.assertTrue((toks[decision == 3] == labels[decision == 3]).all())
        rand = toks[decision == 2]
        self.assertTrue(((rand >= 5) & (rand < len(f["tok"]))).all())
        # the random tokens are uniform over the real vocabulary, not the corpus distribution
        self.assertGreater(len(np.unique(rand)), 0.8 * (len(f["tok"]) - 5))
        # what the model sees at a masked position, as BERT: [MASK], else the truth ~half the time
        seen_truth = (toks[chosen] == labels[chosen]).mean()
        self.assertAlmostEqual(seen_truth, 0.1, delta=tol + 0.01)
        # 15% of the non-special positions overall
        self.assertAlmostEqual(n / (cols["lengths"].sum() - 3 * len(cols["lengths"])), 0.15,
                               delta=0.005)

    def test_deterministic_per_seed(self):
        f = Fixture.get()
        docs = f["docs"][:60]
        a, _ = bd.build(docs, f["tok"], 64, seed=11)
        b, _ = bd.build(docs, f["tok"], 64, seed=11)
        c, _ = bd.build(docs, f["tok"], 64, seed=12)
        for name in COLUMNS:
            self.assertTrue(np.array_equal(a[0][name], b[0][name]), name)
        self.assertFalse(np.array_equal(a[0]["tokens"], c[0]["tokens"]))

    def test_gathered_layout(self):
        """--max-predictions K: the same examples, the masked-LM columns gathered; K caps."""
        f = Fixture.get()
        docs = f["docs"][:80]
        (dense, _), _ = bd.build(docs, f["tok"], 128, seed=5)
        (gathered, _), _ = bd.build(docs, f["tok"], 128, seed=5, max_predictions=20)
        self.assertEqual(set(gathered), {"tokens", "segments", "lengths", "mlm_positions",
                                         "mlm_ids", "mlm_weights", "sentence_labels"})
        n = len(gathered["lengths"])
        for name, dtype in (("mlm_positions", np.int32), ("mlm_ids", np.int32),
                            ("mlm_weights", np.float32)):
            self.assertEqual(gathered[name].shape, (n, 20), name)
            self.assertEqual(gathered[name].dtype, dtype, name)
        for name in ("tokens", "segments", "lengths", "sentence_labels"):
            self.assertTrue(np.array_equal(dense[name], gathered[name]), name)
        labels, weights = bd.dense_mlm(gathered)
        self.assertTrue(np.array_equal(labels, dense["mlm_labels"]))
        self.assertTrue(np.array_equal(weights, dense["mlm_weights"]))
        w, pos, ids = gathered["mlm_weights"], gathered["mlm_positions"], gathered["mlm_ids"]
        self.assertTrue(((w > 0) == (ids > 0)).all())
        self.assertTrue((pos[w == 0] == 0).all())
        for e in range(n):  # real slots first, ascending positions
            k = int(w[e].sum())
            self.assertTrue((w[e, :k] == 1).all())
            self.assertTrue((np.diff(pos[e, :k]) > 0).all())
        (capped, _), _ = bd.build(docs, f["tok"], 128, seed=5, max_predictions=4)
        self.assertEqual(capped["mlm_weights"].shape[1], 4)
        self.assertEqual(capped["mlm_weights"].sum(1).max(), 4)
        self.assertLessEqual((capped["tokens"] == bd.MASK).sum(1).max(), 4)

    def test_vocab_size_check(self):
        f = Fixture.get()
        with self.assertRaisesRegex(bd.DataError, "--vocab-size 100"):
            bd.build(f["docs"][:5], f["tok"], 128, seed=0, vocab_size=100)

    def test_single_document_and_short_text(self):
        tok = Fixture.get()["tok"]
        docs = bd.text_documents("The cat sleeps.\nThe dog waits.\nA cow eats an apple.\n")
        (cols, _), _ = bd.build(docs, tok, 16, seed=0)
        self.assertGreaterEqual(len(cols["lengths"]), 1)
        self.assertGreaterEqual(cols["lengths"].min(), 5)
        self.assertLessEqual(cols["lengths"].max(), 16)
        with self.assertRaisesRegex(bd.DataError, "two non-empty lines"):
            bd.build(bd.text_documents("One line only.\n"), tok, 128, seed=0)
        with self.assertRaisesRegex(bd.DataError, "below 5"):
            bd.build(docs, tok, 4, seed=0)


class CommandLineTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        return self.path(name)

    def test_all_pipeline(self):
        status, out, err = run_cli("all", "--dir", self.dir, "--documents", "60", "--seed", "1")
        self.assertEqual(status, 0, err)
        for line in ("examples", "median", "masked positions", "unigram MLM accuracy",
                     "bigram (left neighbour) MLM accuracy"):
            self.assertIn(line, out)
        for name in ("train.npz", "eval.npz"):
            with np.load(self.path(name)) as z:
                self.assertEqual(set(z.files), set(COLUMNS))
                for col, dtype in COLUMNS.items():
                    self.assertEqual(z[col].dtype, dtype)
        status, out, _ = run_cli("baseline", "--data", self.path("train.npz"),
                                 "--eval", self.path("eval.npz"))
        self.assertEqual(status, 0)
        self.assertIn("bigram", out)
        # the same seed gives the same files
        run_cli("corpus", "--out", self.path("again.txt"), "--documents", "60", "--seed", "1")
        with open(self.path("corpus.txt"), "rb") as a, open(self.path("again.txt"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_vocab_and_encode_any_text(self):
        text = self.write("notes.txt", "Some notes.\nWith two lines.\n\nAnd a second "
                          "paragraph, in a second document.\nÜmlaut line.\n")
        status, out, err = run_cli("vocab", "--text", text, "--size", "200", "--out",
                                   self.path("v.json"))
        self.assertEqual(status, 0, err)
        self.assertIn("fewer than --size 200", out)
        status, out, err = run_cli("encode", "--text", text, "--vocab", self.path("v.json"),
                                   "--out", self.path("d.npz"), "--max-length", "32")
        self.assertEqual(status, 0, err)
        status, out, err = run_cli("encode", "--text", text, "--vocab", self.path("v.json"),
                                   "--out", self.path("g.npz"), "--max-predictions", "20")
        self.assertEqual(status, 0, err)
        with np.load(self.path("g.npz")) as z:
            self.assertEqual(set(z.files), {"tokens", "segments", "lengths", "mlm_positions",
                                            "mlm_ids", "mlm_weights", "sentence_labels"})
            self.assertEqual(z["mlm_weights"].shape[1], 20)
        status, out, err = run_cli("encode", "--text", text, "--vocab", self.path("v.json"),
                                   "--out", self.path("d.npz"), "--vocab-size", "10")
        self.assertEqual(status, 1)
        self.assertIn("--vocab-size 10", err)

    def expect_error(self, argv, message):
        status, _, err = run_cli(*argv)
        self.assertEqual(status, 1, err)
        self.assertIn(message, err)
        self.assertTrue(err.startswith("bert_data.py "), err)
        self.assertNotIn("Traceback", err)

    def test_hostile_inputs(self):
        out = self.path("v.json")
        self.expect_error(["vocab", "--text", self.write("empty.txt", ""), "--size", "100",
                           "--out", out], "no characters")
        self.expect_error(["vocab", "--text", self.write("blank.txt", "\n \n\t\n\r\n"),
                           "--size", "100", "--out", out], "no characters")
        self.expect_error(["vocab", "--text", self.write("bin.dat", bytes(range(256)) * 4),
                           "--size", "100", "--out", out], "binary file")
        self.expect_error(["vocab", "--text", self.write("latin1.txt", "caf\xe9\n".encode(
            "latin-1")), "--size", "100", "--out", out], "not UTF-8")
        self.expect_error(["vocab", "--text", self.path("missing.txt"), "--size", "100",
                           "--out", out], "cannot read")
        good = self.write("good.txt", "a b c\nd e f\n")
        for size in ("5", "3", "0", "-1"):
            self.expect_error(["vocab", "--text", good, "--size", size, "--out", out],
                              "special tokens")
        self.expect_error(["vocab", "--text", good, "--size", "9000", "--out", out],
                          "--model-vocab")
        self.expect_error(["vocab", "--text", good, "--size", "50", "--out", self.dir],
                          "Is a directory")
        self.expect_error(["vocab", "--text", self.dir, "--size", "50", "--out", out],
                          "cannot read")
        self.expect_error(["encode", "--text", good, "--vocab", good, "--out",
                           self.path("x.npz")], "not a readable vocabulary")
        run_cli("vocab", "--text", good, "--size", "50", "--out", out)
        self.expect_error(["encode", "--text", self.write("one.txt", "just one line\n"),
                           "--vocab", out, "--out", self.path("x.npz")], "no examples")
        self.expect_error(["encode", "--text", good, "--vocab", out, "--out",
                           self.path("x.npz"), "--eval-fraction", "0.5"], "--eval-out")
        self.expect_error(["encode", "--text", good, "--vocab", out, "--out",
                           self.path("x.npz"), "--eval-fraction", "0.5", "--eval-out",
                           self.path("e.npz")], "at least 2 documents")

    def test_no_letters_and_control_characters_work(self):
        text = self.write("punct.txt", "123 456 !!! ???\n... --- +++ 789\n\x1b[0m ### @@\n")
        status, out, err = run_cli("vocab", "--text", text, "--size", "64", "--out",
                                   self.path("v.json"))
        self.assertEqual(status, 0, err)
        tok = bd.Tokenizer.load(self.path("v.json"))
        self.assertEqual(tok.decode(tok.encode("... --- 123")), "... --- 123")
        status, out, err = run_cli("encode", "--text", text, "--vocab", self.path("v.json"),
                                   "--out", self.path("d.npz"))
        self.assertEqual(status, 0, err)

    def test_huge_line(self):
        """A 2 MB line (300k words, one of 200k characters) trains and encodes in seconds."""
        rng = random.Random(0)
        lexicon = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(
            rng.randint(1, 9))) for _ in range(3000)]
        huge = " ".join(rng.choice(lexicon) for _ in range(300000)) + " " + "x" * 200000
        text = self.write("huge.txt", "short line one\n" + huge + "\nshort line two\n")
        start = time.time()
        status, out, err = run_cli("vocab", "--text", text, "--size", "2000", "--out",
                                   self.path("v.json"))
        self.assertEqual(status, 0, err)
        status, out, err = run_cli("encode", "--text", text, "--vocab", self.path("v.json"),
                                   "--out", self.path("d.npz"), "--max-length", "64")
        self.assertEqual(status, 0, err)
        self.assertLess(time.time() - start, 120)
        with np.load(self.path("d.npz")) as z:
            self.assertLessEqual(z["lengths"].max(), 64)
        tok = bd.Tokenizer.load(self.path("v.json"))
        self.assertEqual(tok.decode(tok.encode_line(huge)), huge)


if __name__ == "__main__":
    unittest.main(verbosity=1)
