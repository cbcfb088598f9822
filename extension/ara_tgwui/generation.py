"""Which of TGWUI's generation functions the loaded model uses, decided as TGWUI decides it.

TGWUI's `_generate_reply` (modules/text_generation.py) sends the models whose class it lists
(llama.cpp's server, ExLlamaV3, TensorRT-LLM as of v4.7) to `generate_reply_custom` and every
other model to `generate_reply_HF`, unless an extension provides `custom_generate_reply`, which
Ara does to pre-render. So that Ara keeps routing each model where TGWUI would, the list is read
from TGWUI's own source at run time; if that source cannot be read or no longer has that shape,
the choice falls back to the interface TGWUI's custom loaders share (a `generate_with_streaming`
method, which transformers models lack), and the fallback is logged once.
"""

from __future__ import annotations

import inspect
import logging
import re
import weakref
from collections.abc import Callable
from types import ModuleType

log = logging.getLogger("ara_avatar")

_LISTED = re.compile(
    r"__class__\.__name__\s+in\s+[\[(]([^\])]*)[\])]\s*:\s*\n\s*generate_func\s*=\s*generate_reply_custom"
)
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # _generate_reply → its class list


def custom_model_names(text_generation: ModuleType) -> frozenset[str] | None:
    """The model class names that TGWUI's `_generate_reply` sends to `generate_reply_custom`,
    read from its source; None when that cannot be done."""
    key = getattr(text_generation, "_generate_reply", None)
    if key is None:
        return None
    if key not in _cache:
        try:
            match = _LISTED.search(inspect.getsource(text_generation._generate_reply))
        except (AttributeError, OSError, TypeError):
            match = None
        names = frozenset(re.findall(r"['\"](\w+)['\"]", match.group(1))) if match else frozenset()
        _cache[key] = names or None
        if not names:
            log.info(
                "Ara: TGWUI's choice of generation function was not found in its source; choosing "
                "by the model's interface (generate_with_streaming → generate_reply_custom)"
            )
    return _cache[key]


def generation_function(model: object, text_generation: ModuleType) -> Callable:
    """`generate_reply_custom` or `generate_reply_HF` of `text_generation`, as TGWUI picks it for `model`."""
    names = custom_model_names(text_generation)
    if names is not None:
        custom = type(model).__name__ in names
    else:
        custom = callable(getattr(model, "generate_with_streaming", None))
    return text_generation.generate_reply_custom if custom else text_generation.generate_reply_HF
