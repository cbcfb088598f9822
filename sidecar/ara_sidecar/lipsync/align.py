"""Phoneme timing estimated from speech and its known text, for a TTS that gives none (AllTalk).

The text is phonemized with espeak-ng (Piper's own phonemizer) in the speech's language (the
caller's language code, else guessed from the text's script, else `en-us`), then aligned to the
audio by Viterbi over a left-to-right chain of phonemes with a crude acoustic model: every 10 ms
frame's loudness (relative to the utterance) and high-frequency share, against what each class
of sound should show (`CLASSES`): vowels loud, stops near silent, fricatives hissing, pauses
silent. Each phoneme lasts at least `MIN_FRAMES` of its class; spaces and punctuation may take no
time. Accuracy against Piper's own timing is measured by bench/visemes.py."""

from __future__ import annotations

import logging

import numpy as np

from ara_sidecar.audio import Audio, Phoneme

log = logging.getLogger(__name__)

HOP_S = 0.01
# class: (loudness 0–1, high-frequency share 0–1, minimum frames, symbols)
CLASSES: dict[str, tuple[float, float, int, str]] = {
    "vowel": (0.9, 0.05, 3, "aɑæɐʌeɛəɜiɪᵻɨoɔɒuʊɵɚɝyʏøœɯɤɘɞɶ"),
    "approximant": (0.75, 0.05, 2, "lɫɹrwjɥʎʋɰɭɻ"),
    "nasal": (0.6, 0.02, 2, "mnŋɲɴɱ"),
    "voiced stop": (0.35, 0.1, 2, "bdgɡɾɟɢɖ"),
    "stop": (0.15, 0.3, 2, "ptkʔcqʈ"),
    "voiced fricative": (0.5, 0.4, 2, "vðzʒβɣʝʁʀɦ"),
    "fricative": (0.35, 0.7, 2, "fθsʃhxçχɸʂɕħ"),
    "pause": (0.0, 0.3, 1, ".,;:!?…¿¡ "),
}
MIN_SHARE = 0.9  # a sound lasts at least this share of the average sound
MARKS = "ˈˌːˑ"  # stress and length: no time of their own
OPTIONAL = ".,;:!?…¿¡ "  # pauses and word gaps may take no time
# Language codes (AllTalk's `language`, ISO 639-1) whose espeak-ng voice has another name.
ESPEAK_VOICES = {"en": "en-us", "zh": "cmn", "auto": "en-us"}
# Scripts that name their language (text in them with no language given or "auto").
SCRIPTS = (
    ("\u0400", "\u04ff", "ru"),
    ("\u0370", "\u03ff", "el"),
    ("\u0590", "\u05ff", "he"),
    ("\u0600", "\u06ff", "ar"),
    ("\u0900", "\u097f", "hi"),
    ("\u3040", "\u30ff", "ja"),
    ("\uac00", "\ud7af", "ko"),
    ("\u4e00", "\u9fff", "cmn"),
)


def _class_of(symbol: str) -> str | None:
    return next((name for name, (*_, symbols) in CLASSES.items() if symbol in symbols), None)


def espeak_voice(language: str | None, text: str = "") -> str:
    """The espeak-ng voice for a language code (`en`, `de`, `pt-br`, …; None or `auto`: the
    language of the text's script if it has one of `SCRIPTS` (Japanese before Chinese: kana), else
    American English)."""
    if language is None or language == "auto":
        counts = {code: sum(lo <= ch <= hi for ch in text) for lo, hi, code in SCRIPTS}
        if counts["ja"]:
            return "ja"
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] > 0 else "en-us"
    language = language.lower()
    return ESPEAK_VOICES.get(language, language)


def phonemize(text: str, voice: str = "en-us") -> list[str]:
    """espeak-ng phonemes of `text`, one code point each, sentences ended by their punctuation
    (in American English when espeak-ng has no `voice`, nor one for its base language)."""
    from piper.phonemize_espeak import EspeakPhonemizer

    phonemizer = EspeakPhonemizer()
    for name in dict.fromkeys((voice, voice.split("-")[0], "en-us")):
        try:
            sentences = phonemizer.phonemize(name, text)
            break
        except RuntimeError:  # espeak-ng has no such voice
            log.warning("align: espeak-ng has no voice %r", name)
    return [symbol for sentence in sentences for symbol in [*sentence, " "]]


def features(audio: Audio) -> np.ndarray:
    """(frames, 2): loudness relative to the utterance (0 = 40 dB below its loud level, 1 = that
    level) and the share of energy above 3 kHz, per 10 ms hop (25 ms window)."""
    rate = audio.sample_rate
    hop, size = round(HOP_S * rate), round(0.025 * rate)
    count = max(1, int(np.ceil(len(audio.samples) / hop)))
    padded = np.pad(audio.samples, (size // 2, size + count * hop))
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:count] * np.hanning(size)
    spectra = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1 / rate)
    total = spectra[:, freqs >= 80].sum(axis=1) + 1e-12
    db = 10 * np.log10(total)
    loud = float(np.percentile(db, 95))
    loudness = np.clip((db - (loud - 40)) / 40, 0, 1)
    high = spectra[:, freqs >= 3000].sum(axis=1) / total
    return np.stack([loudness, high], axis=1)


def estimate(audio: Audio, text: str, language: str | None = None) -> tuple[Phoneme, ...] | None:
    """Timed phonemes of `text` spoken in `audio` (None when the text has none), phonemized in
    `language` (a code such as `de`; None or `auto`: see `espeak_voice`)."""
    symbols = ["^", *phonemize(text, espeak_voice(language, text)), "$"]
    timed = [s for s in symbols if s not in MARKS and (_class_of(s) or s in "^$")]
    if len(timed) <= 2:
        return None
    obs = features(audio)
    if len(obs) < 3 * len(timed):  # too short for the text: no estimate
        return None
    # The chain of sub-states: each phoneme as many as its minimum frames, which grow with the
    # time each sound has on average (the voiced frames over the sounds).
    sounds = sum(1 for symbol in timed if _class_of(symbol) not in (None, "pause"))
    per_sound = float((obs[:, 0] > 0.3).sum()) / max(sounds, 1)
    mins = []
    for symbol in timed:
        frames = CLASSES[_class_of(symbol) or "pause"][2]
        if symbol in "^$":
            frames = 1
        elif symbol not in OPTIONAL:
            frames = max(frames, round(MIN_SHARE * per_sound * (1.2 if frames >= 3 else 0.9)))
        mins.append(frames)
    if sum(mins) > 0.9 * len(obs):  # a fast speaker: shrink the minimums to fit
        mins = [max(1, int(m * 0.9 * len(obs) / sum(mins))) for m in mins]
    targets, owner, first, optional = [], [], [], []
    for k, (symbol, frames) in enumerate(zip(timed, mins, strict=True)):
        loud, high = CLASSES[_class_of(symbol) or "pause"][:2]
        for j in range(frames):
            targets.append((loud, high))
            owner.append(k)
            first.append(j == 0)
            optional.append(symbol in OPTIONAL)
    target = np.array(targets)
    cost = ((obs[:, None, 0] - target[None, :, 0]) / 0.25) ** 2 + (
        (obs[:, None, 1] - target[None, :, 1]) / 0.4
    ) ** 2
    path = _viterbi(cost, np.array(first), np.array(optional), np.array(owner))
    bounds: dict[int, list[float]] = {}
    for t, s in enumerate(path):
        k = owner[s]
        bounds.setdefault(k, [t * HOP_S, (t + 1) * HOP_S])[1] = (t + 1) * HOP_S
    end = audio.duration_s
    out: list[Phoneme] = []
    cursor = 0.0
    it = iter(range(len(timed)))
    k = next(it)
    for symbol in symbols:
        if symbol in MARKS or not (_class_of(symbol) or symbol in "^$"):
            out.append((symbol, cursor, cursor))  # marks: no time, before their vowel
            continue
        start, stop = bounds.get(k, [cursor, cursor])
        start, stop = min(start, end), min(stop, end)
        out.append((symbol, start, stop))
        cursor = stop
        k = next(it, k)
    return tuple(out)


def _viterbi(cost: np.ndarray, first: np.ndarray, optional: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """The cheapest left-to-right path through the sub-states (stay, advance by one, or skip an
    optional phoneme from its predecessor's last sub-state to its successor's first); it starts in
    the first sub-state and ends in the last."""
    frames, states = cost.shape
    # skip[s]: s starts a phoneme and the phoneme before it is optional → may come from s - width - 1
    width = np.zeros(states, int)
    for s in range(states):
        if first[s] and s > 0 and optional[s - 1]:
            k = owner[s - 1]
            width[s] = int((owner == k).sum())
    total = np.full(states, np.inf)
    total[0] = cost[0, 0]
    back = np.zeros((frames, states), np.int16)
    index = np.arange(states)
    skip_from = np.where(width > 0, index - width - 1, -1)
    for t in range(1, frames):
        stay = total
        advance = np.concatenate(([np.inf], total[:-1]))
        skip = np.where(skip_from >= 0, total[np.maximum(skip_from, 0)], np.inf)
        options = np.stack([stay, advance, skip])
        choice = np.argmin(options, axis=0)
        total = options[choice, index] + cost[t]
        back[t] = choice
    path = np.empty(frames, int)
    s = states - 1
    for t in range(frames - 1, -1, -1):
        path[t] = s
        step = back[t, s]
        s = s if step == 0 else s - 1 if step == 1 else skip_from[s]
    return path
