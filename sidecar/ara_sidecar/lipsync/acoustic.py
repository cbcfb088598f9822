"""Visemes classified from the sound alone, for speech with neither timing nor text (uploaded audio).

Every 10 ms the speech is described by its loudness, the first two formants (LPC) and its share
of energy above 3 kHz (hiss), and classed: silence, hiss (s, sh or f by the hiss's height and
strength), a vowel (open, mid or close by F1, rounded or spread by F2 among vowels as open, each
relative to this utterance), a closure (a short dip inside speech: a stop or a nasal murmur) or
another voiced sound. A closure is alveolar or velar (t d n k: lips apart) when the second
formant rises into it, else labial (p b m: lips shut; the labial locus lowers F2, and a weak cue
errs toward a closing mouth). Runs of one class become pseudo-phonemes (one representative IPA
symbol each), so that the viseme machinery treats them as it treats Piper's timing. Its accuracy
against Piper's timing is measured by bench/visemes.py."""

from __future__ import annotations

import numpy as np

from ara_sidecar.audio import Audio, Phoneme

HOP_S = 0.01
WINDOW_S = 0.025
RATE = 11025  # the speech is analysed at this sample rate (formants below 5 kHz)
LPC_ORDER = 12
SILENCE_DB = 35.0  # frames this far below the utterance's loud level are silent
CLOSURE_MAX_S = 0.16  # a dip inside speech up to this long is a closure (longer: a pause)
DIP_DB = 6.0  # a closure is this much quieter than the loudest sound …
DIP_REACH = 8  # … within this many frames on both sides
ALVEOLAR_RISE = 1.05  # not labial: F2 at the closure's edges above this share of the vowels' F2
MIN_RUN = 3  # frames a class must last (shorter runs join their neighbours)
ROUNDED_SHARE = 0.75  # rounded vowels: F2 below this share of the median F2 of vowels as open


def phonemes(audio: Audio) -> tuple[Phoneme, ...] | None:
    """Pseudo-phonemes classified from `audio` (None when it is too short or silent)."""
    obs = _features(audio)
    if obs is None:
        return None
    labels = _classes(obs)
    out: list[Phoneme] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((labels[start], start * HOP_S, min(i * HOP_S, audio.duration_s)))
            start = i
    return tuple(out)


def _features(audio: Audio) -> dict[str, np.ndarray] | None:
    samples = _resampled(audio.samples.astype(np.float64), audio.sample_rate)
    hop, size = round(HOP_S * RATE), round(WINDOW_S * RATE)
    count = int(np.ceil(len(samples) / hop))
    if count < 10:
        return None
    padded = np.pad(samples, (size // 2, size + count * hop))
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:count]
    spectra = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1 / RATE)
    total = spectra[:, freqs >= 80].sum(axis=1) + 1e-12
    db = 10 * np.log10(total)
    loud = float(np.percentile(db, 95))
    if loud < -60:
        return None
    hiss = spectra[:, freqs >= 3000]
    f1, f2 = _formants(frames)
    return {
        "db": db - loud,  # 0 = the utterance's loud level
        "high": hiss.sum(axis=1) / total,
        "hiss_hz": (hiss * freqs[freqs >= 3000]).sum(axis=1) / (hiss.sum(axis=1) + 1e-12),
        "f1": f1,
        "f2": f2,
    }


def _resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` at `rate` resampled to RATE (band-limited, through the spectrum)."""
    if rate == RATE or not len(samples):
        return samples
    count = max(1, round(len(samples) * RATE / rate))
    spectrum = np.fft.rfft(samples)
    return np.fft.irfft(spectrum[: count // 2 + 1], count) * (count / len(samples))


def _formants(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and F2 (Hz, NaN where not found) per frame: roots of an LPC polynomial (autocorrelation
    method, Levinson–Durbin, all frames at once) with narrow bandwidths."""
    emphasised = np.diff(frames, axis=1, prepend=0) * 0.97 + frames * 0.03
    x = emphasised * np.hamming(frames.shape[1])
    n = x.shape[1]
    spectrum = np.fft.rfft(x, 2 * n, axis=1)
    r = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : LPC_ORDER + 1]
    r[:, 0] = r[:, 0] * (1 + 1e-9) + 1e-12
    a = np.zeros((len(x), LPC_ORDER + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, LPC_ORDER + 1):
        k = -(r[:, i] + (a[:, 1:i] * r[:, i - 1 : 0 : -1]).sum(axis=1)) / err
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1 : 0 : -1]
        a[:, i] = k
        err = err * (1 - k * k)
    companion = np.zeros((len(x), LPC_ORDER, LPC_ORDER))
    companion[:, 0, :] = -a[:, 1:]
    companion[:, 1:, :-1] = np.eye(LPC_ORDER - 1)
    roots = np.linalg.eigvals(companion)
    freq = np.angle(roots) * RATE / (2 * np.pi)
    bandwidth = -np.log(np.maximum(np.abs(roots), 1e-9)) * RATE / np.pi
    valid = (roots.imag > 0) & (freq > 150) & (freq < 4500) & (bandwidth < 500)
    freq = np.where(valid, freq, np.inf)
    freq.sort(axis=1)
    f1 = np.where(np.isfinite(freq[:, 0]), freq[:, 0], np.nan)
    f2 = np.where(np.isfinite(freq[:, 1]), freq[:, 1], np.nan)
    return f1, f2


def _classes(obs: dict[str, np.ndarray]) -> list[str]:
    """A representative IPA symbol per frame (see the module's description)."""
    db, high, f1, f2 = obs["db"], obs["high"], obs["f1"], obs["f2"]
    n = len(db)
    silent = db < -SILENCE_DB
    hissing = ~silent & (high > 0.45)
    voiced = ~silent & ~hissing
    vowel = voiced & (db > -14) & np.isfinite(f1) & np.isfinite(f2)
    labels = np.full(n, "ə", dtype=object)  # another voiced sound: a neutral, half-open mouth
    labels[silent] = "."
    labels[hissing] = np.where(obs["hiss_hz"][hissing] > 4200, "s", np.where(db[hissing] < -22, "f", "ʃ"))
    if vowel.sum() >= 5:
        lo1, hi1 = np.percentile(f1[vowel], [25, 75])
        openness = (f1 - lo1) / max(hi1 - lo1, 1.0)
        close, mid = vowel & (openness <= 0.35), vowel & (openness > 0.35) & (openness <= 0.9)
        labels[vowel & (openness > 0.9)] = "a"
        for part, (round_, spread_) in ((close, ("u", "i")), (mid, ("o", "e"))):
            if part.sum() >= 3:  # rounded: F2 low among the vowels of the same height
                rounded = f2 < ROUNDED_SHARE * np.median(f2[part])
                labels[part & rounded] = round_
                labels[part & ~rounded] = spread_
    labels = _smoothed(labels)
    for start, end in _dips(db, silent | voiced):
        labels[start:end] = "t" if _alveolar(f2, vowel, start, end) else "p"
    return list(_smoothed(labels))


def _dips(db: np.ndarray, candidate: np.ndarray) -> list[tuple[int, int]]:
    """Frame ranges of closures: runs up to CLOSURE_MAX_S that are DIP_DB quieter than the
    loudest frames within DIP_REACH on both sides, which are speech (and are not hiss)."""
    n, quiet = len(db), np.zeros(len(db), bool)
    reach = DIP_REACH
    for i in range(n):
        before = db[max(0, i - reach) : i]
        after = db[i + 1 : i + 1 + reach]
        if len(before) and len(after) and candidate[i]:
            around = min(before.max(), after.max())  # speech on both sides, not a pause's edge
            quiet[i] = around > -SILENCE_DB and db[i] < around - DIP_DB
    out = []
    i = 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if (j - i) * HOP_S <= CLOSURE_MAX_S and i > 0 and j < n:
                out.append((i, j))
            i = j
        else:
            i += 1
    return out


def _alveolar(f2: np.ndarray, vowel: np.ndarray, start: int, end: int) -> bool:
    """The second formant rises into the closure at `start`…`end` (alveolar or velar; a labial
    closure lowers it): at the vowel edges next to it (within 40 ms) it is above ALVEOLAR_RISE
    times the same vowels' F2 further away (40–100 ms). Without that evidence a closure is taken
    for a labial one (lips shut: the mouth closes between syllables rather than flapping)."""
    edges, cores = [], []
    sides = (
        (range(start - 4, start), range(start - 10, start - 4)),
        (range(end, end + 4), range(end + 4, end + 10)),
    )
    for near, far in sides:
        edge = [f2[i] for i in near if 0 <= i < len(f2) and vowel[i]]
        core = [f2[i] for i in far if 0 <= i < len(f2) and vowel[i]]
        if edge and core:
            edges.append(np.median(edge))
            cores.append(np.median(core))
    return bool(edges) and float(np.mean(edges)) > ALVEOLAR_RISE * float(np.mean(cores))


def _smoothed(labels: np.ndarray) -> np.ndarray:
    """Runs shorter than MIN_RUN frames take the label of the longer neighbour run."""
    labels = labels.copy()
    runs = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append([start, i])
            start = i
    for k, (a, b) in enumerate(runs):
        if b - a >= MIN_RUN or len(runs) == 1:
            continue
        left = runs[k - 1] if k > 0 else None
        right = runs[k + 1] if k + 1 < len(runs) else None
        pick = max((r for r in (left, right) if r is not None), key=lambda r: r[1] - r[0])
        labels[a:b] = labels[pick[0]]
    return labels
