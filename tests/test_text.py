"""What an out-of-vocabulary rate counts (leanml/_text.py)."""

from __future__ import annotations

from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from leanml._text import oov_analyzer

DOCS = ["The cheap meds, now!", "Meeting at noon about the cheap offer", "win money fast now"]


def test_a_word_analyzer_counts_the_words_its_n_grams_are_made_of() -> None:
    vec = TfidfVectorizer(ngram_range=(1, 3), stop_words=["the", "about"]).fit(DOCS)
    analyze = oov_analyzer(vec)
    # lowercased, tokenized (two word characters or more), stop words out, no n-grams
    assert analyze("The Cheap meds at noon, about NOW") == ["cheap", "meds", "at", "noon", "now"]
    # the vectorizer's own terms, which the rate counted before: words and their pairs, triples
    assert "cheap meds" in vec.build_analyzer()("The cheap meds")
    assert vec.ngram_range == (1, 3)  # the fitted vectorizer is left as it was


def test_other_analyzers_count_the_vectorizers_own_terms() -> None:
    for vec in (
        CountVectorizer(analyzer="char_wb", ngram_range=(2, 3)),
        CountVectorizer(ngram_range=(2, 2)),  # no unigram terms: words are never known
        CountVectorizer(analyzer=str.split),
    ):
        vec.fit(DOCS)
        assert oov_analyzer(vec)("cheap meds now") == vec.build_analyzer()("cheap meds now")
