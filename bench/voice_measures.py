"""Independent acoustic measures of synthesized speech, by Praat (via `parselmouth`).

    .venv/bin/python bench/voice_measures.py FILE.wav

This module is the judge of the project's voice output, so it imports nothing from the project:
only numpy and Praat. Samples are mono floats in [-1, 1] (integer arrays are scaled by their type's
range; several channels are averaged); `rate` is the sample rate in Hz. Times are in seconds,
frequencies in Hz, levels in dB.

Praat settings (the program's standard values unless noted):
  pitch        `To Pitch (ac)`, time step 10 ms, two passes: floor 60 Hz, ceiling 500 Hz (wider
               than Praat's 75-600 default at the bottom, for deep male voices), then the
               speaker's own range, 0.75 × Q1 to 1.5 × Q3 of the first (Hirst 2011).
  formants     `To Formant (burg)`, time step 10 ms, 5 formants, 25 ms window, pre-emphasis from
               50 Hz; the ceiling follows the voice: 5000 Hz when the median f0 is below 160 Hz
               (male), else 5500 Hz (female), as Praat's manual advises; it can be overridden.
               Frames: voiced, with intensity in the upper half of the voiced frames' intensities.
  HNR          `To Harmonicity (cc)`, time step 10 ms, minimum pitch 75 Hz, silence threshold 0.1,
               1 period per window; mean over the frames Praat does not mark unvoiced (-200 dB).
  pauses       plain numpy: RMS of consecutive 10 ms frames, silent below -35 dB of the loudest frame.
"""

from __future__ import annotations

import json
import math
import sys
import wave
from pathlib import Path

import numpy as np
import parselmouth

TIME_STEP_S = 0.01
FLOOR_HZ = 60.0
CEILING_HZ = 500.0
MALE_FEMALE_F0_HZ = 160.0  # median f0 below this: male formant ceiling
MALE_CEILING_HZ = 5000.0
FEMALE_CEILING_HZ = 5500.0
PRAAT_UNVOICED_DB = -200.0
CLIP_LEVEL = 0.999


def _as_float(samples: np.ndarray) -> np.ndarray:
    """Mono float64 samples in [-1, 1]."""
    x = np.asarray(samples)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        x = x.astype(np.float64) / max(abs(info.min), info.max)
    x = x.astype(np.float64)
    if x.ndim == 2:  # (n, channels) or (channels, n): average the shorter axis
        x = x.mean(axis=1 if x.shape[0] >= x.shape[1] else 0)
    return x.reshape(-1)


def _sound(samples: np.ndarray, rate: int) -> parselmouth.Sound:
    return parselmouth.Sound(_as_float(samples), sampling_frequency=float(rate))


def _pitch(sound: parselmouth.Sound, floor_hz: float, ceiling_hz: float) -> parselmouth.Pitch:
    return sound.to_pitch_ac(time_step=TIME_STEP_S, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)


def pitch_track(
    samples: np.ndarray, rate: int, floor_hz: float = FLOOR_HZ, ceiling_hz: float = CEILING_HZ
) -> tuple[np.ndarray, np.ndarray]:
    """Praat's autocorrelation pitch every 10 ms: (frame centre times in s, f0 in Hz, 0 where unvoiced).

    Two passes, as Hirst (2011) and De Looze & Hirst (2008) set Praat up for a speaker: the first
    over `floor_hz`–`ceiling_hz`, the second over 0.75 × its first quartile to 1.5 × its third
    (within the first range), which keeps octave errors (creak read as half the pitch) out."""
    sound = _sound(samples, rate)
    pitch = _pitch(sound, floor_hz, ceiling_hz)
    f0 = np.nan_to_num(pitch.selected_array["frequency"].astype(np.float64))
    voiced = f0[f0 > 0]
    if voiced.size >= 10:
        q1, q3 = np.percentile(voiced, [25, 75])
        low, high = max(floor_hz, 0.75 * q1), min(ceiling_hz, 1.5 * q3)
        if high > low:
            pitch = _pitch(sound, low, high)
            f0 = np.nan_to_num(pitch.selected_array["frequency"].astype(np.float64))
    return np.asarray(pitch.xs(), dtype=np.float64), f0


def _voiced(f0: np.ndarray) -> np.ndarray:
    return f0[f0 > 0]


def median_f0_hz(samples: np.ndarray, rate: int) -> float:
    """Median f0 in Hz over voiced frames (NaN if nothing is voiced)."""
    voiced = _voiced(pitch_track(samples, rate)[1])
    return float(np.median(voiced)) if voiced.size else math.nan


def pitch_sd_semitones(samples: np.ndarray, rate: int) -> float:
    """Pitch range: standard deviation of 12*log2(f0/median f0) over voiced frames, in semitones."""
    voiced = _voiced(pitch_track(samples, rate)[1])
    if voiced.size < 2:
        return math.nan
    return float(np.std(12.0 * np.log2(voiced / np.median(voiced))))


def formant_ceiling_hz(median_f0: float) -> float:
    """Praat's formant ceiling for a voice: 5000 Hz for a male (median f0 < 160 Hz), else 5500 Hz."""
    return MALE_CEILING_HZ if median_f0 < MALE_FEMALE_F0_HZ else FEMALE_CEILING_HZ


def formants_hz(samples: np.ndarray, rate: int, max_formant_hz: float | None = None) -> dict[str, float]:
    """Medians of F1, F2, F3 in Hz over vowel-like frames, by Burg LPC.

    Vowel-like frames are voiced (Praat pitch) with an intensity at or above the median intensity of
    the voiced frames. The ceiling `max_formant_hz` defaults to `formant_ceiling_hz(median f0)`; it is
    returned as "ceiling_hz". Formants are NaN if no frame qualifies.
    """
    sound = _sound(samples, rate)
    pitch = _pitch(sound, FLOOR_HZ, CEILING_HZ)
    f0 = np.nan_to_num(pitch.selected_array["frequency"].astype(np.float64))
    voiced = _voiced(f0)
    if max_formant_hz is None:
        max_formant_hz = formant_ceiling_hz(float(np.median(voiced)) if voiced.size else math.inf)
    result = {"f1_hz": math.nan, "f2_hz": math.nan, "f3_hz": math.nan, "ceiling_hz": float(max_formant_hz)}
    if not voiced.size:
        return result
    formant = sound.to_formant_burg(
        time_step=TIME_STEP_S,
        max_number_of_formants=5.0,
        maximum_formant=float(max_formant_hz),
        window_length=0.025,
        pre_emphasis_from=50.0,
    )
    intensity = sound.to_intensity(minimum_pitch=100.0, time_step=TIME_STEP_S)
    times = np.asarray(formant.xs())
    frame_f0 = np.array([pitch.get_value_at_time(t) for t in times])
    frame_db = np.array([intensity.get_value(t) for t in times])
    usable = np.nan_to_num(frame_f0) > 0
    usable &= np.isfinite(frame_db)
    if not usable.any():
        return result
    loud = usable & (frame_db >= np.median(frame_db[usable]))
    for n in (1, 2, 3):
        values = np.array([formant.get_value_at_time(n, t) for t in times[loud]])
        values = values[np.isfinite(values)]
        if values.size:
            result[f"f{n}_hz"] = float(np.median(values))
    return result


def hnr_db(samples: np.ndarray, rate: int) -> float:
    """Harmonics-to-noise ratio in dB: mean of Praat's cross-correlation harmonicity over voiced frames."""
    harmonicity = _sound(samples, rate).to_harmonicity_cc(
        time_step=TIME_STEP_S, minimum_pitch=75.0, silence_threshold=0.1, periods_per_window=1.0
    )
    values = np.asarray(harmonicity.values).reshape(-1)
    values = values[values > PRAAT_UNVOICED_DB]
    return float(values.mean()) if values.size else math.nan


def speech_and_pauses(
    samples: np.ndarray, rate: int, silence_db: float = -35.0, min_pause_s: float = 0.12
) -> dict[str, float | list[float]]:
    """Speaking time and pauses, from the RMS of consecutive 10 ms frames.

    A frame is silent when its RMS is below `silence_db` dB relative to the loudest frame. Pauses are
    runs of silent frames of at least `min_pause_s` between the first and the last sounding frame
    (leading and trailing silence are not pauses). `speaking_s` is the time from the start of the first
    sounding frame to the end of the last one, less the pauses. All values in seconds.
    """
    x = _as_float(samples)
    hop = max(1, round(rate * TIME_STEP_S))
    count = len(x) // hop
    empty: dict[str, float | list[float]] = {"speaking_s": 0.0, "pauses_s": [], "mean_pause_s": 0.0}
    if count == 0:
        return empty
    rms = np.sqrt(np.mean(x[: count * hop].reshape(count, hop) ** 2, axis=1))
    peak = rms.max()
    if peak <= 0:
        return empty
    sounding = 20.0 * np.log10(np.maximum(rms, 1e-12) / peak) >= silence_db
    active = np.flatnonzero(sounding)
    first, last = int(active[0]), int(active[-1])
    pauses: list[float] = []
    run = 0
    for frame in range(first, last + 2):
        if frame <= last and not sounding[frame]:
            run += 1
            continue
        if run and run * hop / rate >= min_pause_s:
            pauses.append(run * hop / rate)
        run = 0
    speaking = (last - first + 1) * hop / rate - sum(pauses)
    return {
        "speaking_s": float(speaking),
        "pauses_s": [float(p) for p in pauses],
        "mean_pause_s": float(np.mean(pauses)) if pauses else 0.0,
    }


def clipped_fraction(samples: np.ndarray) -> float:
    """Fraction of samples whose magnitude is at least 0.999 of full scale."""
    x = _as_float(samples)
    return float(np.mean(np.abs(x) >= CLIP_LEVEL)) if x.size else 0.0


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def measure(samples: np.ndarray, rate: int) -> dict[str, object]:
    """All the measures in one JSON-serialisable dict (an undefined value, e.g. no voiced frame, is None)."""
    track = pitch_track(samples, rate)[1]
    f0 = _voiced(track)
    median = float(np.median(f0)) if f0.size else math.nan
    sd = float(np.std(12.0 * np.log2(f0 / median))) if f0.size >= 2 else math.nan
    formants = formants_hz(samples, rate)
    pauses = speech_and_pauses(samples, rate)
    return {
        "duration_s": len(_as_float(samples)) / rate,
        "rate_hz": int(rate),
        "median_f0_hz": _json_float(median),
        "pitch_sd_semitones": _json_float(sd),
        "voiced_fraction": f0.size / max(1, track.size),
        **{name: _json_float(value) for name, value in formants.items()},
        "hnr_db": _json_float(hnr_db(samples, rate)),
        **pauses,
        "clipped_fraction": clipped_fraction(samples),
    }


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file (8/16/24/32-bit) as mono float samples in [-1, 1] and its rate in Hz."""
    with wave.open(str(path), "rb") as wav:
        width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8) / float(2**23)
    else:
        pcm = np.frombuffer(raw, dtype={2: "<i2", 4: "<i4"}[width])
        x = pcm.astype(np.float64) / float(2 ** (8 * width - 1))
    return x.reshape(-1, channels).mean(axis=1), rate


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: voice_measures.py FILE.wav", file=sys.stderr)
        return 2
    samples, rate = read_wav(argv[0])
    print(json.dumps(measure(samples, rate), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
