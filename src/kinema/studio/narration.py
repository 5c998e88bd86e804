"""Speech for narration: a `Voice` turns text into mono samples; espeak-ng is the built-in one.

espeak-ng is small, offline and speaks ~100 languages (including ja, cmn,
ko); it comes as a pip wheel (`espeakng-loader`, in the `studio` extra) that
carries the library and its data, so a user installs nothing else. It is a C
library with process-wide state, driven here through ctypes behind a lock.
Any object with `synthesize(text) -> (samples, rate)` can replace it, e.g. a
neural TTS where one is installed.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Protocol

import numpy as np

from kinema.errors import KinemaInputError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Voice(Protocol):
    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Mono float32 samples in [-1, 1] and their sample rate."""
        ...


class _Espeak:
    """The loaded library (one per process: espeak-ng keeps global state)."""

    lock = threading.Lock()
    _instance: _Espeak | None = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ModuleNotFoundError:
            raise KinemaInputError("narration needs espeak-ng: pip install 'kinema[studio]'") from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self.lib, self.rate = lib, int(rate)
        self.chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive as long as the library may call it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer, n: int, events: int) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    @classmethod
    def get(cls) -> _Espeak:
        with cls.lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance


class EspeakVoice:
    """espeak-ng speech: `voice` is a language/voice name (en, en-us, ja, cmn, ...), `rate` words per minute."""

    def __init__(self, voice: str = "en", rate: int = 165):
        self.voice, self.rate = voice, rate

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        engine = _Espeak.get()
        data = text.encode("utf-8")
        with _Espeak.lock:
            if engine.lib.espeak_SetVoiceByName(self.voice.encode()) != 0:
                raise KinemaInputError(f"soundtrack.narration.voice: espeak-ng has no voice {self.voice!r}")
            engine.lib.espeak_SetParameter(_ESPEAK_RATE, int(self.rate), 0)
            engine.chunks = []
            err = engine.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            engine.lib.espeak_Synchronize()
            chunks, engine.chunks = engine.chunks, []
        if err != 0:
            raise RuntimeError(f"espeak-ng could not speak {text[:40]!r} (error {err})")
        samples = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
        return samples, engine.rate
