"""Voice conversion: own-voice transforms (pitch, formants, whisper) and conversion to target voices.

The public API (everything runs on the calling worker thread unless it says otherwise):

- ``VoiceTransform``, ``ConversionTarget``, ``convert_audio`` (offline, a whole recording);
- ``Voice``, ``build_voice``, ``save_voice``, ``load_voice``, ``list_voices``, ``find_voice``;
- ``LiveConverter`` / ``LiveSettings`` / ``LiveStats`` (mic → converted voice, real time);
- renderers: ``WorldRenderer`` (DSP, the default) and ``VocoderRenderer`` (a studio model);
  ``renderer_for(name)`` picks one by name.

Heavy modules (pyworld, sounddevice) are imported by the submodules that need them.
"""

from studio.engine.convert.mapping import SpeakerMapping
from studio.engine.convert.pipeline import ConversionResult, ConversionTarget, convert_audio
from studio.engine.convert.render import Renderer, VocoderRenderer, WorldRenderer, renderer_for
from studio.engine.convert.transforms import VoiceTransform
from studio.engine.convert.voice import (
    Voice,
    VoiceError,
    build_voice,
    find_voice,
    list_voices,
    load_voice,
    save_voice,
    user_voices_dir,
)
from studio.engine.convert.world import ConversionError, MissingDependencyError

__all__ = [
    "ConversionError", "ConversionResult", "ConversionTarget", "MissingDependencyError", "Renderer",
    "SpeakerMapping", "VocoderRenderer", "Voice", "VoiceError", "VoiceTransform", "WorldRenderer",
    "build_voice", "convert_audio", "find_voice", "list_voices", "load_voice", "renderer_for", "save_voice",
    "user_voices_dir",
]
