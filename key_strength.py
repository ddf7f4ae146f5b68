"""How strong a signing key is: long enough, not a published sample, not made of repeats, runs or words."""

from __future__ import annotations

import itertools

MIN_SECRET_CHARS = 32
# Sample keys from tutorials, docs and generators; a key copied from one is as good as public.
WELL_KNOWN_SECRETS = frozenset(
    s.lower()
    for s in (
        "change-me-to-a-long-random-string-of-32-chars",
        "replace-this-with-a-long-random-secret-key",
        "please-change-this-secret-key-in-production",
        "this-is-a-very-secret-key-for-development",
        "your-secret-key-here-make-it-long-and-random",
        "super-secret-key-that-nobody-will-ever-guess",
        "0123456789abcdef0123456789abcdef",
        "abcdefghijklmnopqrstuvwxyz012345",
        "12345678901234567890123456789012",
        "keep it secret, keep it safe. keep it secret!",
        "you-will-never-guess-this-secret-key-12345",
        "mysecretkeymysecretkeymysecretkey",
        "supersecretkeysupersecretkey1234",
        "changeme-changeme-changeme-changeme",
    )
)
# Words that make a key guessable however often they are repeated or joined.
GUESSABLE_WORDS = (
    "secret", "password", "changeme", "change-me", "example", "default", "flask", "twilio", "test", "key", "app",
)  # fmt: skip


def looks_guessable(key: str) -> bool:
    """Tell whether a key is made of repeats, runs or sample words rather than randomness."""
    folded = key.lower()
    if folded in WELL_KNOWN_SECRETS or len(set(key)) < 6:
        return True
    trigrams = [folded[i : i + 3] for i in range(len(folded) - 2)]
    if len(set(trigrams)) < 0.75 * len(trigrams):  # a short unit repeated: "abcdefgh" * 4
        return True
    steps = sum(abs(ord(b) - ord(a)) == 1 for a, b in itertools.pairwise(folded))
    if steps > len(folded) // 2:  # runs like "abcdef..." or "123456..."
        return True
    hidden = folded
    for word in GUESSABLE_WORDS:
        hidden = hidden.replace(word, "")
    # Mostly sample words and runs: "supersecretkey...", "mysecretkeyforflaskapp1234567890abcdefgh".
    return len(without_runs(hidden)) < MIN_SECRET_CHARS // 2


def without_runs(text: str) -> str:
    """Drop every run of three or more characters that climb or fall one by one ("abcd", "4321")."""
    kept, start = [], 0
    for end in range(1, len(text) + 1):
        if end == len(text) or abs(ord(text[end]) - ord(text[end - 1])) != 1:
            if end - start < 3:
                kept.append(text[start:end])
            start = end
    return "".join(kept)


def secret_problem(name: str, key: str) -> str:
    """Return why a signing key is unfit ('' when it is fine)."""
    if len(key) < MIN_SECRET_CHARS:
        return (
            f"{name} is {len(key)} characters; use at least {MIN_SECRET_CHARS}, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if looks_guessable(key):
        return (
            f"{name} is a well-known or guessable value (repeats, runs or sample words); generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return ""
