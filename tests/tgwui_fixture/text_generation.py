"""A faithful fixture of how text-generation-webui chooses its generation function.

Mirrors the selection at the top of `_generate_reply` in TGWUI's modules/text_generation.py as
of commit 1dcde41d03d13fc768316f4d2256a8a6dd044268 (2026-05-03, after v4.7.3): the structure and
the class list are TGWUI's, the rest of the function is left out. The extension reads this
list from the real module's source at run time (extension/ara_tgwui/generation.py); if TGWUI
changes the shape, update this fixture from its source and the test shows whether Ara follows.
"""

from modules import shared


def generate_reply_HF(question, original_question, state, stopping_strings=None, is_chat=False):
    yield "HF"


def generate_reply_custom(question, original_question, state, stopping_strings=None, is_chat=False):
    yield "custom"


def apply_extensions(typ):
    return None


def check_model_loaded():
    return shared.model is not None, "No model is loaded."


def _generate_reply(question, state, stopping_strings=None, is_chat=False, escape_html=False, for_ui=False):
    # Find the appropriate generation function
    generate_func = apply_extensions("custom_generate_reply")
    if generate_func is None:
        model_is_loaded, error_message = check_model_loaded()  # noqa: RUF059 (as in TGWUI)
        if not model_is_loaded:
            yield ""
            return

        if shared.model.__class__.__name__ in ["LlamaServer", "Exllamav3Model", "TensorRTLLMModel"]:
            generate_func = generate_reply_custom
        else:
            generate_func = generate_reply_HF

    yield from generate_func(question, question, state, stopping_strings, is_chat=is_chat)
