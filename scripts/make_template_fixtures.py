#!/usr/bin/env python3
"""Renders the chat templates in tests/fixtures/chat_templates/ with Python jinja2, configured as
transformers' apply_chat_template configures it (chat_template_utils._compile_jinja_template), and
writes the expected outputs to tests/fixtures/chat_templates/expected.json. The C++ tests
(tests/unit/chat_template/) render the same cases and compare byte for byte.

Usage: .venv/bin/python scripts/make_template_fixtures.py

The dict keys in the `templates` and `features` contexts are sorted (the C++ test reads them with
nlohmann::json, which stores object keys sorted). The `key_order` cases keep Python's insertion
order, as a client sends it: the server parses requests with nlohmann::ordered_json, and the C++ test
reads that section with ordered_json.
"""
import json
import pathlib
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "chat_templates"


class AssistantTracker(Extension):
    """transformers' {% generation %} tag; renders its body unchanged when not tracking."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


# strftime_now() is pinned to this time in the fixtures (the C++ tests set RenderOptions::now_unix_s).
FIXED_NOW_UNIX_S = 1752000000  # 2025-07-08


def make_env(now=None):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return (now() if now else datetime.now()).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def sort_keys(x):
    return json.loads(json.dumps(x, sort_keys=True))


def render(env, source, context):
    try:
        return {"output": env.from_string(source).render(**context)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": str(e), "error_kind": "syntax"}
    except jinja2.exceptions.UndefinedError as e:
        return {"error": str(e), "error_kind": "undefined"}
    except jinja2.exceptions.TemplateError as e:  # raise_exception
        return {"error": str(e), "error_kind": "raise_exception"}
    except Exception as e:  # TypeError, ValueError, ... from Python itself
        return {"error": f"{type(e).__name__}: {e}", "error_kind": "python"}


# name -> (file, bos, eos, extra kwargs)
TEMPLATES = {
    "smollm2": ("smollm2.jinja", "<|im_start|>", "<|im_end|>", {}),
    "llama2": ("llama-2-7b-chat.jinja", "<s>", "</s>", {}),
    "llama3.1": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
                 {"date_string": "26 Jul 2024"}),
    "llama3.2": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
                 {"date_string": "02 Mar 2025"}),
    "mistral-v0.2": ("mistral-7b-instruct-v0.2.jinja", "<s>", "</s>", {}),
    "mistral-nemo": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", {}),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", {}),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", {}),
    "gemma-7b": ("gemma-7b-it.jinja", "<bos>", "<eos>", {}),
    "gemma-2": ("google-gemma-2-2b-it.jinja", "<bos>", "<eos>", {}),
    "phi-3.5": ("microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>", {}),
    "deepseek-r1": ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>",
                    "<｜end▁of▁sentence｜>", {}),
    "deepseek-v3.1": ("deepseek-ai-DeepSeek-V3.1.jinja", "<｜begin▁of▁sentence｜>",
                      "<｜end▁of▁sentence｜>", {}),
    "command-r-plus-tools": ("CohereForAI-c4ai-command-r-plus-tool_use.jinja", "<BOS_TOKEN>",
                             "<|END_OF_TURN_TOKEN|>", {}),
    "hermes-2-pro-tools": ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
                           "<|begin_of_text|>", "<|im_end|>", {}),
    "smollm3": ("HuggingFaceTB-SmolLM3-3B.jinja", "", "<|im_end|>", {}),
    "gpt-oss": ("openai-gpt-oss-120b.jinja", "<|startoftext|>", "<|return|>", {}),
    "granite-3.3": ("ibm-granite-granite-3.3-2B-Instruct.jinja", "<|end_of_text|>",
                    "<|end_of_text|>", {}),
    "mistral-small-3.2": ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>", {}),
    "functionary-v3.1": ("meetkai-functionary-medium-v3.1.jinja", "<|begin_of_text|>",
                         "<|eot_id|>", {}),
    "gemma-4": ("google-gemma-4-31B-it.jinja", "<bos>", "<eos>", {}),
    "kimi-k2": ("moonshotai-Kimi-K2.jinja", "", "<|im_end|>", {}),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "system_user_assistant": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there, how can I help?"},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "no_system_multi_turn": [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
        {"role": "assistant", "content": "Second answer"},
        {"role": "user", "content": "Third question"},
    ],
    "single_user": [{"role": "user", "content": "Just one message."}],
    "empty_content": [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "x"},
    ],
    "unicode_and_whitespace": [
        {"role": "system", "content": "  Système: réponds en français. 日本語も OK 🌍  "},
        {"role": "user", "content": "héllo \"quoted\" 'single' back\\slash\nnew line\ttab 👩‍👩‍👧"},
        {"role": "assistant", "content": "\n  padded answer with trailing spaces   \n"},
        {"role": "user", "content": "Ça va? <|im_end|> [INST] {{ not a tag }} {% neither %}"},
    ],
    "assistant_last": [
        {"role": "user", "content": "Complete this"},
        {"role": "assistant", "content": "Partial answer"},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I speak first"},
        {"role": "user", "content": "ok"},
    ],
    "system_only": [{"role": "system", "content": "Only a system prompt."}],
    "thinking": [
        {"role": "user", "content": "Think about it."},
        {"role": "assistant", "content": "<think>\nLet me reason.\n</think>\n\nThe answer is 4."},
        {"role": "user", "content": "And again?"},
    ],
    "tool_calls": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather in Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
         "content": "{\"temperature\": 21.5, \"condition\": \"sunny\"}"},
        {"role": "assistant", "content": "It is 21.5 °C and sunny in Zürich."},
        {"role": "user", "content": "Thanks!"},
    ],
}


def template_cases(env):
    cases = []
    for name, (file, bos, eos, extra) in TEMPLATES.items():
        source = (FIXTURES / file).read_text()
        for conv_name, messages in CONVERSATIONS.items():
            for add_gen in (False, True):
                variants = [("", {})]
                if conv_name == "tool_calls":
                    variants = [("+tools", {"tools": [WEATHER_TOOL]})]
                if name == "qwen3" and conv_name == "thinking":
                    variants.append(("+no_thinking", {"enable_thinking": False}))
                for suffix, kwargs in variants:
                    context = sort_keys({"messages": messages, "add_generation_prompt": add_gen,
                                         "bos_token": bos, "eos_token": eos, **extra, **kwargs})
                    case = {"template": name, "file": file,
                            "name": f"{conv_name}{suffix}/gen={int(add_gen)}",
                            "context": context}
                    case.update(render(env, source, context))
                    cases.append(case)
    return cases


# Small templates that pin down one language feature each: rendered by jinja2 like the real ones.
FEATURES = [
    ("literals", "{{ 1 }}|{{ -2 }}|{{ 1.5 }}|{{ 1.0 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ 0.1 }}|{{ true }}|{{ none }}|{{ 'a' 'b' }}"),
    ("containers", "{{ [1, 'a', none, true, 1.5, {'k': 'v'}] }}|{{ (1, 2) }}|{{ (1,) }}|{{ {'b': 1, 'a': [2]} }}"),
    ("string_repr", "{{ ['it\\'s', \"q\\\"\", 'tab\\t', 'nl\\n', 'é'] }}"),
    ("escapes", "{{ 'a\\nb\\tc\\\\d\\x41\\u00e9\\'' }}"),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 10 / 4 * 2 }} {{ 1 + 2 * 3 - 4 }} {{ 2 ** -1 }} {{ 7.5 % 2 }}"),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ [1] }}|{{ 'x' + 'y' }}|{{ [1] + [2, 3] }}|{{ 'ab' * 3 }}"),
    ("compare", "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 3 >= 4 }} {{ 'a' != 'a' }}"),
    ("in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 3 not in [3] }}"),
    ("logic", "{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ not none }}|{{ '' or [] }}|{{ not 1 == 2 }}"),
    ("cond_expr", "{{ 'yes' if 1 else 'no' }}|{{ 'yes' if 0 else 'no' }}|{{ 'only' if false }}|{{ 1 if 0 else 2 if 1 else 3 }}"),
    ("index_slice", "{% set l = [1, 2, 3, 4, 5] %}{{ l[0] }}{{ l[-1] }}{{ l[1:3] }}{{ l[::-1] }}{{ l[::2] }}{{ l[-2:] }}{{ l[:-3] }}{{ l[10:] }}{{ 'héllo'[1:] }}{{ 'abc'[::-1] }}{{ 'abc'[1] }}"),
    ("attr_item", "{% set d = {'a': {'b': 'c'}, 'n': none} %}{{ d.a.b }}{{ d['a']['b'] }}{{ d.missing }}|{{ d.n.x }}|{{ d.a.b is defined }}{{ d.zz is defined }}"),
    ("for_loop", "{% for x in [10, 20, 30] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
    ("for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}|{% for x in none_var %}{{ x }}{% else %}undef{% endfor %}"),
    ("for_filter_if", "{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ x }}{{ loop.index }}{{ loop.last }},{% endfor %}"),
    ("for_unpack", "{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}"),
    ("for_dict_string", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for c in 'héllo' %}{{ c }}.{% endfor %}"),
    ("loop_prev_next", "{% for x in 'abc' %}{{ loop.previtem }}{{ x }}{{ loop.nextitem }} {% endfor %}"),
    ("loop_controls", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in [1, 2] %}{{ loop.index }}{{ a * b }} {% endfor %}{{ loop.index }}|{% endfor %}"),
    ("scoping", "{% set x = 0 %}{% for i in [1, 2, 3] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}{% if true %}{% set y = 5 %}{% endif %}{{ y }}"),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for i in range(4) %}{% set ns.count = ns.count + i %}{% endfor %}{{ ns.count }}{{ ns.found }}"),
    ("set_tuple_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}inner {{ a }}{% endset %}[{{ blk }}]"),
    ("range", "{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}"),
    ("if_elif", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}other{% endif %},{% endfor %}"),
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}  \n e"),
    ("trim_lstrip_blocks", "line1\n    {% if true %}\n    inside\n    {% endif %}\nline2\n  {# comment #}\nline3 {{ 'x' }}\n   {%+ if true %}keep{% endif %}\n"),
    ("comments", "a{# a comment {{ x }} #}b\n{#- trimmed -#}\n c"),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  x  {%- endraw %}"),
    ("trailing_newline", "text\n"),
    ("crlf", "a\r\nb{% if true %}\r\nc{% endif %}\r\n"),
    ("filters_string", "{{ '  hi  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello wORLD-foo' | title }}|{{ 'hELLO' | capitalize }}|{{ 'aXbXc' | replace('X', '-') }}|{{ 'xxhixx' | trim('x') }}"),
    ("filters_list", "{{ [3, 1, 2] | first }}{{ [3, 1, 2] | last }}{{ [1, 2] | length }}{{ 'héllo' | length }}{{ [1, 2, 1] | unique | list }}{{ [1, 2, 3] | reverse | list }}{{ ['a', 'b'] | join(', ') }}{{ [1, 2] | join }}"),
    ("filters_default", "{{ missing | default('dflt') }}|{{ '' | default('e') }}|{{ '' | default('e', true) }}|{{ none | d('n') }}|{{ missing | d }}"),
    ("filters_convert", "{{ '42' | int }}{{ 'x' | int }}{{ 3.9 | int }}{{ '2.5' | float }}{{ 3 | float }}{{ 5 | string }}{{ [1] | string }}{{ -3 | abs }}"),
    ("filters_map_select", "{% set ms = [{'role': 'user', 'c': 1}, {'role': 'system', 'c': 2}, {'role': 'user', 'c': 3}] %}{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}{{ ms | rejectattr('role', 'eq', 'user') | list | length }}{{ [1, 2, 3, 4] | select('even') | list }}{{ ['a', 'b'] | map('upper') | join }}"),
    ("filters_items", "{% for k, v in {'z': 1, 'a': 2} | items %}{{ k }}{{ v }}{% endfor %}{{ {'a': 1} | items | list }}"),
    ("tojson", "{{ {'b': [1, 2.5, none, true], 'a': 'é\"\\n', 'c': {}} | tojson }}|{{ [] | tojson }}|{{ 'x' | tojson }}"),
    ("tojson_indent", "{{ {'b': [1, {'x': []}], 'a': 'y'} | tojson(indent=2) }}|{{ [1, 2] | tojson(indent=4) }}"),
    ("tojson_args", "{{ {'b': 1, 'a': [1, 2]} | tojson(separators=(',', ':')) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}"),
    ("tests", "{{ 1 is number }}{{ 'a' is string }}{{ none is none }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ true is boolean }}{{ x is undefined }}{{ 3 is odd }}{{ 4 is even }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is true }}{{ 0 is false }}{{ 6 is divisibleby 3 }}"),
    ("tests_compare", "{{ 2 is equalto 2 }}{{ 2 is eq(3) }}{{ 1 is not none }}{{ 'a' is in 'abc' }}{{ 3 is gt 2 }}{{ 3 is le 2 }}{{ 'ab' is lower }}"),
    ("string_methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na\\n'.lstrip('\\n') }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'hello world'.title() }}|{{ 'a-a-a'.replace('-', '+', 1) }}"),
    ("string_methods_2", "{{ '<think>x</think>y'.split('</think>')[-1] }}|{{ 'abc'.find('c') }}|{{ 'aaa'.count('a') }}|{{ ', '.join(['a', 'b']) }}|{{ 'hello'.capitalize() }}"),
    ("dict_methods", "{% set d = {'b': 1, 'a': 2} %}{{ d.keys() | list }}{{ d.values() | list }}{{ d.items() | list }}{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 'dflt') }}"),
    ("macro", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }}"),
    ("macro_call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}"),
    ("filter_block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}"),
    ("generation", "{% generation %}generated {{ 1 }}{% endgeneration %}"),
    ("undefined_ops", "{{ missing }}|{{ missing | length }}|{{ missing ~ 'x' }}|{{ missing is defined }}|{{ missing == missing }}|{% if not missing %}falsy{% endif %}"),
    ("filter_precedence", "{{ 'a' + 'bc' | upper }}|{{ -2 | abs }}|{{ not 'x' is string }}|{{ [1, 2] | length + 1 }}"),
    ("raise_exception", "{% if true %}{{ raise_exception('Custom error: ' + 'details') }}{% endif %}"),
    ("error_undefined_attr", "{{ missing.attr }}"),
    ("error_type", "{{ 'a' + 1 }}"),
    ("error_syntax", "{% if true %}unclosed"),
    ("error_unknown_filter", "{{ 'a' | no_such_filter }}"),
    ("error_unknown_tag", "{% frobnicate %}"),
    ("strftime_defined", "{{ strftime_now is defined }}{{ raise_exception is defined }}"),
    ("messages_loop", "{% for m in messages %}{{ m.role }}={{ m['content'] | trim }}{% if not loop.last %}, {% endif %}{% endfor %}{{ messages | length }}{{ add_generation_prompt }}"),
]

FEATURE_CONTEXT = sort_keys({
    "messages": [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}],
    "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>",
})


def feature_cases(env):
    cases = []
    for name, source in FEATURES:
        case = {"name": name, "source": source, "context": FEATURE_CONTEXT}
        case.update(render(env, source, FEATURE_CONTEXT))
        cases.append(case)
    return cases


# Dicts in the order a client writes them, not sorted: a system message with extra keys, tool-call
# arguments and tool schemas. jinja2 sees insertion order in items(), `for k in d`, tojson and repr.
KEY_ORDER_MESSAGES = [
    {"role": "system", "content": "You can call tools.", "zeta": 1,
     "alpha": {"y": 2, "x": [1, {"q": 0, "p": "é"}]}},
    {"role": "user", "content": "What's the weather in Zürich?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": "call12345",
         "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Zürich", "days": 2}}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
     "content": "{\"temperature\": 21.5}"},
]

KEY_ORDER_FEATURES = [
    ("items", "{% for m in messages %}{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}|{% endfor %}"),
    ("iterate", "{% for k in messages[0] %}{{ k }},{% endfor %}{{ messages[0].keys() | list }}{{ messages[0].alpha.values() | list }}{{ messages[0] | items | list }}"),
    ("repr", "{{ messages[0] }}|{{ messages[2].tool_calls }}"),
    ("tojson", "{{ messages[0] | tojson }}|{{ messages[2].tool_calls[0] | tojson(indent=2) }}|{{ messages[0] | tojson(sort_keys=true) }}"),
    ("dictsort", "{{ messages[0].alpha | dictsort }}{% for k, v in messages[2].tool_calls[0].function.arguments | dictsort %}{{ k }}{% endfor %}"),
]

# Real templates that print tool schemas or tool-call arguments with tojson.
KEY_ORDER_TEMPLATES = ["qwen2.5", "qwen3", "hermes-2-pro-tools", "llama3.1", "mistral-nemo"]


def key_order_cases(env):
    context = {"messages": KEY_ORDER_MESSAGES, "add_generation_prompt": True, "bos_token": "<s>",
               "eos_token": "</s>"}
    cases = []
    for name, source in KEY_ORDER_FEATURES:
        case = {"name": name, "source": source, "context": context}
        case.update(render(env, source, context))
        cases.append(case)
    for name in KEY_ORDER_TEMPLATES:
        file, bos, eos, extra = TEMPLATES[name]
        ctx = {"messages": KEY_ORDER_MESSAGES, "tools": [WEATHER_TOOL], "add_generation_prompt": True,
               "bos_token": bos, "eos_token": eos, **extra}
        case = {"name": name, "file": file, "context": ctx}
        case.update(render(env, (FIXTURES / file).read_text(), ctx))
        cases.append(case)
    return cases


def main():
    env = make_env(now=lambda: datetime.fromtimestamp(FIXED_NOW_UNIX_S))
    out = {
        "now_unix_s": FIXED_NOW_UNIX_S,
        "generator": "scripts/make_template_fixtures.py",
        "jinja2_version": jinja2.__version__,
        "templates": template_cases(env),
        "features": feature_cases(env),
        "key_order": key_order_cases(env),
    }
    path = FIXTURES / "expected.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    n_err = sum("error" in c for c in out["templates"])
    print(f"wrote {path}: {len(out['templates'])} template cases ({n_err} expected errors), "
          f"{len(out['features'])} feature cases, {len(out['key_order'])} key-order cases")


if __name__ == "__main__":
    main()
