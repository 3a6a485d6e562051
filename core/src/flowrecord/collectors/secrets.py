"""Secret redaction: keep passwords, tokens and keys out of the record.

Everything flowrecord stores about a task (params, tags, environment variables,
the uncommitted diff) passes through here first. Two independent nets catch a
secret: its *name* (a param called ``db_password`` or an env var ``HF_TOKEN``
loses its whole value) and its *shape* (a ``postgresql://u:pw@h/db`` URI, an
``AKIA...`` AWS key id, a ``ghp_...`` GitHub token, a JWT, a PEM private key
block), whatever it is called. Redacted text becomes :data:`REDACTED`.

The name rules work on the key split into words (``apiKey``, ``API_KEY`` and
``api-key`` all read ``api key``), so ``monkey`` and ``keyboard_layout`` are not
secrets while ``aws_key`` and ``KEY`` are. Data and ML vocabulary that merely
contains a secret word is allowed on purpose: ``primary_key``, ``partition_key``,
``asset_key``, ``step_key``, ``sort_key``, ``public_key``, ``rng_key``; ``tokenizer``,
``max_tokens``, ``pad_token``, ``eos_token_id``. Missing a secret costs more
than hiding a harmless value, so any other name that looks like a secret is
hidden. Users add their own key patterns with :func:`add_patterns`.

Regular expressions are compiled once, on first use, and key decisions are
cached, because :func:`redact` runs for every param of every task. Compiling
all of them took ~5 ms, which every task process paid at import; a task that
records a few params needs few of them.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "REDACTED",
    "add_patterns",
    "clear_patterns",
    "is_secret_key",
    "redact",
    "redact_mapping",
    "redact_text",
    "redact_value",
]

REDACTED = "***"
"""What a secret is replaced with."""

# Nested structures deeper than this are not walked (a dict that contains itself
# would recurse forever); what lies below is hidden rather than risked.
_MAX_DEPTH = 32


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """*pattern* compiled once per process, when first needed.

    Two threads may both compile it the first time; either result serves.
    """
    return re.compile(pattern)


# --------------------------------------------------------------------------- keys

_CAMEL_BOUNDARY = r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
_DIGIT_BOUNDARY = r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])"
_NON_WORD = r"[^a-z0-9]+"

# Harmless phrases that contain a secret word. They are cut out of the
# normalised key before the secret rules run, so ``eos_token`` is allowed but
# ``eos_token_secret`` is still a secret.
_ALLOWED_PHRASES = (
    r"_(?:pad|eos|bos|unk|sep|cls|mask|special|start|end|stop|max|min|num|n|total|first|last"
    r"|next|new|added|image|vocab|sentinel|prefix|suffix|eot|output|input|per|decoder_start)"
    r"_token(?=_)"
    r"|_token_(?:id|ids|count|counts|len|length|limit|type|types|index|indices|budget|usage)(?=_)"
    r"|_(?:primary|foreign|partition|sort|sorting|join|group|grouping|cache|dedup|dedupe|lookup"
    r"|composite|unique|surrogate|natural|shard|sharding|hash|range|row|index|merge|order|dict"
    r"|map|routing|cluster|clustering|distribution|business|entity|public|metric|column|field"
    r"|attribute|feature|object|run|asset|label|idempotency|rng|prng|random|seed|cursor|record"
    r"|event|message|kafka|partitioning|dagster|step|task|op|job|node|dag|flow|pipeline"
    r"|dataset|table|model|version|experiment|trace|span|sequence|context)_keys?(?=_)"
    r"|_keys?_(?:column|columns|col|cols|field|fields|by|func|fn|type|types|len|length|size"
    r"|name|names|prefix|spec)(?=_)"
    r"|_session_(?:name|timeout|ttl|count|len|length|duration|type|size)(?=_)"
    r"|_auth_(?:type|method|mode|provider|backend|enabled|url|scheme|domain|host)(?=_)"
    r"|_(?:first|second|third|last|single|multi|two|one|forward|backward|next|final|num|n|max"
    r"|min|each|per|by)_pass(?=_)"
)

# Secret rules on the normalised key, which is wrapped in underscores so that
# ``_word_`` means "a whole word" and ``word_`` means "a word ending in word".
_SECRET_KEY = (
    # Strong words: a secret wherever they appear, even glued to another word.
    r"password|passwd|passphrase|secret|credential|apikey|privatekey|accesskey|privkey"
    # A word that ends in "token": token, authtoken, hftoken (not tokens, tokenizer).
    r"|token_"
    r"|_keys?_"
    r"|_(?:api|access|private|ssh|signing|master|encryption|license|auth|client|app|session"
    r"|account|storage|service|deploy)key_"
    r"|_(?:pwd|auth|authorization|cookies?|dsn|creds|bearer|session|sessionid|sessid|jwt"
    r"|otp|pat|sig|connstr|x_amz_signature|x_amz_credential|x_goog_signature"
    r"|x_goog_credential)_"
    r"|cookie_"
    # "pass" as the last word of a longer name: DB_PASS, SMTP_PASS.
    r"|^_.+_pass_$"
)

_lock = threading.Lock()
_user_patterns: tuple[re.Pattern[str], ...] = ()
# Bumped whenever the user patterns change. It is part of the cache key, so an
# answer computed under the old patterns can never be served under the new ones.
_generation = 0


def _normalise(key: str) -> str:
    words = _compiled(_CAMEL_BOUNDARY).sub("_", key)
    words = _compiled(_DIGIT_BOUNDARY).sub("_", words.lower())
    return "_" + _compiled(_NON_WORD).sub("_", words).strip("_") + "_"


@functools.lru_cache(maxsize=8192)
def _decide(key: str, generation: int) -> bool:
    for pattern in _user_patterns:
        if pattern.search(key):
            return True
    if not _may_name_a_secret(key):
        return False
    normal = _normalise(key)
    secret = _compiled(_SECRET_KEY)
    # Cutting an allowed phrase leaves one underscore, so the words around it
    # stay separate ("_eos_token_id_" -> "__id_": "id" is still a word). A cut
    # never makes a name secret (it removes whole words and joins none), so a
    # name the rules pass uncut needs no cut: most names never compile the
    # long phrase list.
    if secret.search(normal) is None:
        return False
    return secret.search(_compiled(_ALLOWED_PHRASES).sub("_", normal)) is not None


def rules_version() -> int:
    """A number that changes whenever :func:`add_patterns` or :func:`clear_patterns` changes the rules.

    What was redacted under one version may be reused while it holds.
    """
    return _generation


def is_secret_key(key: str) -> bool:
    """Whether a value stored under ``key`` must be hidden entirely.

    >>> is_secret_key("AWS_SECRET_ACCESS_KEY"), is_secret_key("apiKey"), is_secret_key("KEY")
    (True, True, True)
    >>> is_secret_key("monkey"), is_secret_key("partition_key"), is_secret_key("max_tokens")
    (False, False, False)
    """
    return _decide(key if isinstance(key, str) else str(key), _generation)


def add_patterns(patterns: Iterable[str]) -> None:
    """Treat keys matching any of ``patterns`` as secrets too.

    Each pattern is a regular expression searched case-insensitively in the key
    as written, e.g. ``"^internal_"`` or ``"ssn"``. Patterns add up across calls;
    adding one twice is harmless.

    :raises ValueError: a pattern is not a valid regular expression (a pattern
        meant to hide a secret that silently did nothing would leak it).
    """
    global _user_patterns, _generation
    compiled = []
    for raw in patterns:
        try:
            compiled.append(re.compile(raw, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"invalid redaction pattern {raw!r}: {exc}") from exc
    with _lock:
        known = {p.pattern for p in _user_patterns}
        fresh = tuple(p for p in compiled if p.pattern not in known)
        if fresh:
            _user_patterns = _user_patterns + fresh
            _generation += 1
            _decide.cache_clear()


def clear_patterns() -> None:
    """Forget the patterns given to :func:`add_patterns` (tests, config reloads)."""
    global _user_patterns, _generation
    with _lock:
        _user_patterns = ()
        _generation += 1
        _decide.cache_clear()


# ------------------------------------------------------------------------- values

# Secrets recognisable by their shape, whatever they are called. Each rule is
# gated by literal substrings: a plain ``in`` test is far cheaper than running a
# regular expression over every value, and each expression starts with a literal
# so that, when it does run, the regex engine can skip ahead to candidates.
_Rule = tuple[tuple[str, ...], str, str]
_SHAPE_RULES: tuple[_Rule, ...] = (
    # scheme://user:password@host -> the password. The password part is greedy,
    # so an unescaped "@" inside it still ends at the last "@" of the authority.
    (("://",), r"(://[^/\s:@?#]*+:)[^/\s?#]*@", r"\g<1>" + REDACTED + "@"),
    (
        ("uthorization",),
        r"([Aa]uthorization\s*[:=]\s*)[^\s,;&]+(?:[ \t]+[A-Za-z0-9\-._~+/]{6,}=*)?",
        r"\g<1>" + REDACTED,
    ),
    (("earer",), r"([Bb]earer\s+)[A-Za-z0-9\-._~+/]{8,}=*", r"\g<1>" + REDACTED),
    # AWS access key ids.
    (
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        r"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
        REDACTED,
    ),
    # GitHub, GitLab, OpenAI/Anthropic-style, Stripe, Slack, Google, Hugging Face, npm.
    (("gh",), r"gh[pousr]_[A-Za-z0-9]{30,}", REDACTED),
    (("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,}", REDACTED),
    (("glpat-",), r"glpat-[A-Za-z0-9_\-]{20,}", REDACTED),
    (("sk-",), r"sk-[A-Za-z0-9_\-]{20,}", REDACTED),
    (("_live_", "_test_"), r"[spr]k_(?:live|test)_[A-Za-z0-9]{16,}", REDACTED),
    (("xox",), r"xox[abposr]-[A-Za-z0-9\-]{10,}", REDACTED),
    (("AIza",), r"AIza[0-9A-Za-z_\-]{35}", REDACTED),
    (("hf_",), r"hf_[A-Za-z0-9]{30,}", REDACTED),
    (("npm_",), r"npm_[A-Za-z0-9]{36}", REDACTED),
    # JSON Web Tokens: two base64url JSON objects and a signature.
    (
        ("eyJ",),
        r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        REDACTED,
    ),
)

# One search for every rule's literals at once: most values hold none of them.
_SHAPE_TRIGGER = "|".join(re.escape(lit) for rule in _SHAPE_RULES for lit in rule[0])

# key=value or key: value anywhere: query strings and keyword DSNs
# ("host=h password=pw"), ODBC strings ("Pwd={p w};"), JSON ({"token": "x"}),
# Python kwargs and dict literals, environ["KEY"] = "x", --password=x. The value
# sits in a lookahead so a match ends at the separator: the value of a harmless
# key ("url=https://h/?token=x") is then scanned for pairs of its own. Keys
# start at a word boundary and never give back characters (possessive), which
# keeps the scan linear on long text.
_PAIR = (
    r"(?P<q>[\"']?)(?<![\w.])(?P<key>[A-Za-z_][\w.\-]*+)(?P=q)\]?"
    r"[ \t]*(?:=>|=(?!=)|:(?![:/]))[ \t]*"
    r"(?=(?P<val>(?:[bBrRuUfF]{1,2}(?=[\"']))?(?:\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')"
    r"|\{[^{}\n\"':]*\}"
    r"|[^\s,;&{}\[\]()\"']+))"
)

# --password hunter2: a flag and its value as separate words. The leading "-"
# must not follow a word character or another "-" (not "x-token value").
_CLI_FLAG = r"-(?<![\w\-]-)-?(?P<key>[A-Za-z][\w\-]*+)[ \t]+(?P<val>[^\s\-]\S*)"

# A private key block, or its BEGIN line up to the end of the text when the END
# line is missing (a diff cut at its size cap): the body is hidden either way.
_PEM_BLOCK = (
    r"(?s)(?P<begin>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)(?P<body>.*?)"
    r"(?:(?P<end>-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)|\Z)"
)
# What starts a line before its content: a diff's "+"/"-"/" ", then indentation.
_LINE_LEAD = r"[+\- ]?[ \t]*"

# Every secret-key rule needs one of these in the lowercased key, so a line that
# holds none of them names no secret and the key scans skip it (most lines of a
# diff). A test keeps this list in step with the rules.
_KEY_ROOTS = (
    "pass", "secret", "credential", "key", "token", "pwd", "auth", "cookie", "dsn",
    "creds", "bearer", "sess", "jwt", "otp", "pat", "sig", "connstr",
)  # fmt: skip

# A value shorter than this with no "=" or ":" can hold none of the shapes above;
# skipping the scan keeps redact() well under a microsecond for "adam" or "0.01".
_SHORTEST_SHAPE = 14


def _hide_pairs(line: str) -> str:
    pieces: list[str] = []
    done = 0
    for match in _compiled(_PAIR).finditer(line):
        start, end = match.span("val")
        val = match.group("val")
        if start < done or val == REDACTED or _compiled(_BLOCK_SCALAR).match(val):
            continue
        if not is_secret_key(match.group("key")):
            continue
        opening = len(val) - len(val.lstrip("bBrRuUfF"))  # a Python string prefix: b"..."
        if len(val) >= opening + 2 and val[opening] in "{\"'":
            hidden = val[: opening + 1] + REDACTED + val[-1]
        else:
            hidden = REDACTED
        pieces += (line[done:start], hidden)
        done = end
    if not pieces:
        return line
    pieces.append(line[done:])
    return "".join(pieces)


def _hide_cli_flag(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("key")):
        return match.group(0)
    return match.group(0)[: match.start("val") - match.start(0)] + REDACTED


def _hide_pem(match: re.Match[str]) -> str:
    end = match.group("end") or ""
    lines = match.group("body").split("\n")
    if len(lines) == 1:
        return match.group("begin") + REDACTED + end
    # Keep the line count and a diff's "+"/"-" marks so a patch still reads:
    # the first piece ends the BEGIN line, the last one starts the END line.
    last = _compiled(_LINE_LEAD).match(lines[-1]).group(0) if end else REDACTED  # type: ignore[union-attr]
    hidden = [
        lines[0],
        *(_compiled(_LINE_LEAD).match(line).group(0) + REDACTED for line in lines[1:-1]),  # type: ignore[union-attr]
        last if lines[-1] else "",
    ]
    return match.group("begin") + "\n".join(hidden) + end


def redact_value(value: str) -> str:
    """Hide the secrets inside a value, whatever it is called.

    Covers URIs with a password, secret ``key=value`` / ``"key": "value"`` pairs
    inside the value (DSNs, query strings, JSON), ``--password value`` flags,
    bearer tokens and authorization headers, PEM private keys, and well-known
    token shapes (AWS key ids, GitHub/GitLab/Slack/Hugging Face/npm tokens,
    OpenAI-style and Stripe keys, Google API keys, JWTs). Non-strings are
    returned unchanged.

    >>> redact_value("postgresql://app:hunter2@db:5432/prod")
    'postgresql://app:***@db:5432/prod'
    >>> redact_value("host=db user=app password=hunter2")
    'host=db user=app password=***'
    """
    if not isinstance(value, str):
        return value
    if len(value) < _SHORTEST_SHAPE and "=" not in value and ":" not in value:
        return value
    return _hide_keys(_hide_shapes(value), whole_lines=False)


def _hide_shapes(text: str) -> str:
    if "-----BEGIN" in text:
        text = _compiled(_PEM_BLOCK).sub(_hide_pem, text)
    if _compiled(_SHAPE_TRIGGER).search(text) is None:
        return text
    for literals, pattern, replacement in _SHAPE_RULES:
        for literal in literals:
            if literal in text:
                text = _compiled(pattern).sub(replacement, text)
                break
    return text


def _may_name_a_secret(text: str) -> bool:
    if _user_patterns:
        return True
    lower = text.lower()
    for root in _KEY_ROOTS:  # noqa: SIM110 - a plain loop is measurably faster than any()
        if root in lower:
            return True
    return False


def _hide_keys(text: str, *, whole_lines: bool) -> str:
    """Hide values given to secret keys, looking only at lines that may name one."""
    if "\n" not in text:
        return _hide_keys_in_line(text, whole_lines) if _may_name_a_secret(text) else text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _may_name_a_secret(line):
            lines[i] = _hide_keys_in_line(line, whole_lines)
    return "\n".join(lines)


def _hide_keys_in_line(line: str, whole_lines: bool) -> str:
    if whole_lines:
        line = _compiled(_LINE_ASSIGNMENT).sub(_hide_line_assignment, line)
    if "=" in line or ":" in line:
        line = _hide_pairs(line)
    if "-" in line:
        line = _compiled(_CLI_FLAG).sub(_hide_cli_flag, line)
    return line


# --------------------------------------------------------------------- structures


def _redact(key: str, value: Any, depth: int) -> Any:
    if value is None or (isinstance(value, str) and not value):
        # An unset secret is useful to see as unset, and there is nothing to hide.
        return value
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_value(value)
    if isinstance(value, (bool, int, float)):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redact(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(key, item, depth + 1) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(key, item, depth + 1) for item in value)
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        # pydantic's secret wrappers announce themselves; no need to import pydantic.
        return REDACTED
    # Other objects are left alone: the caller renders them to text and redacts
    # that (rendering here could be slow: think of a large DataFrame).
    return value


def redact(key: str, value: object) -> object:
    """The value to record for ``key``: hidden entirely, scanned, or as is.

    A secret key hides the whole value, whatever its type (``None`` and ``""``
    stay visible, so an unset secret reads as unset). Otherwise strings go
    through :func:`redact_value`, dicts are redacted key by key, lists and
    tuples item by item under the parent key, and numbers and other objects
    pass unchanged (render objects to text first to have them scanned).

    >>> redact("db", {"user": "app", "password": "hunter2"})
    {'user': 'app', 'password': '***'}
    """
    return _redact(key if isinstance(key, str) else str(key), value, 0)


def redact_mapping(mapping: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``mapping`` with every value passed through :func:`redact`."""
    return {k: _redact(str(k), v, 0) for k, v in mapping.items()}


# --------------------------------------------------------------------------- text

# A key at the start of a line (after a diff "+"/"-", indentation, "export" or a
# YAML list dash), then "=" or ":", then the rest of the line: .env, YAML, INI,
# TOML, shell and Python assignments. The whole rest of the line is the value,
# so "password: two words" loses both words.
_LINE_ASSIGNMENT = (
    r"(?m)^(?P<lead>[+\- ]?[ \t]*(?:export[ \t]+|-[ \t]+)?)"
    r"(?P<q>[\"']?)(?P<key>[A-Za-z_][\w.\-]*)(?P=q)"
    r"(?P<sep>[ \t]*(?::=|=(?!=)|:(?!:))[ \t]*)(?P<val>[^\n]*)$"
)

# "key:" alone on a line, or "key: |" opening a YAML block scalar; the more
# indented lines below it are its value.
_YAML_HEAD = (
    r"(?m)^(?P<lead>[+\- \t]*)(?P<q>[\"']?)(?P<key>[A-Za-z_][\w.\-]*)(?P=q):"
    r"[ \t]*(?:[|>][+\-]?[0-9]?)?[ \t]*$"
)
_INDENTATION = r"[ \t]*(?:-[ \t]+)*"
_BLOCK_SCALAR = r"[|>][+\-]?[0-9]?$"
_DIFF_MARK = r"(?m)^(?:diff --git |--- |@@ )"


def _hide_line_assignment(match: re.Match[str]) -> str:
    val = match.group("val").rstrip()
    if (
        not val
        or val == REDACTED
        or _compiled(_BLOCK_SCALAR).match(val)
        or not is_secret_key(match.group("key"))
    ):
        return match.group(0)
    hidden = REDACTED
    if len(val) >= 2 and val[0] in "\"'":
        close = val.find(val[0], 1)
        if close > 0:
            # Keep the quotes and what follows them (a JSON line's trailing comma).
            hidden = val[0] + REDACTED + val[close:]
    end = match.start("val") - match.start(0)
    return match.group(0)[:end] + hidden


def _indent(line: str, is_diff: bool) -> tuple[str, int]:
    """The line's lead (diff mark, indentation, list dash) and its indentation width."""
    body = line[1:] if is_diff and line[:1] in ("+", "-", " ") else line
    width = _compiled(_INDENTATION).match(body).end()  # type: ignore[union-attr]
    return line[: len(line) - len(body) + width], width


def _hide_yaml_blocks(text: str) -> str:
    # In a diff the first character of a line is a mark, not indentation; plain
    # YAML is read as written, a list item's "- " counting as indentation.
    is_diff = _compiled(_DIFF_MARK).search(text) is not None
    pieces: list[str] = []
    done = 0
    for head in _compiled(_YAML_HEAD).finditer(text):
        if head.start() < done or not is_secret_key(head.group("key")):
            continue
        depth = _indent(head.group("lead"), is_diff)[1]
        pos = head.end() + 1
        pieces.append(text[done:pos])
        while pos < len(text):
            newline = text.find("\n", pos)
            stop = len(text) if newline < 0 else newline
            line = text[pos:stop]
            lead, width = _indent(line, is_diff)
            if line[len(lead) :].strip():
                if width <= depth:
                    break
                line = lead + REDACTED
            pieces.append(line + ("\n" if newline >= 0 else ""))
            pos = stop + 1
        done = min(pos, len(text))
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def redact_text(text: str) -> str:
    """Hide the secrets in free text: a diff, a ``.env`` file, YAML, JSON, code.

    Values assigned to secret keys (``KEY=VALUE``, ``key: value``,
    ``"key": "value"``, ``--password value``, a YAML block under a secret key),
    also on a diff's ``+``/``-`` lines, become :data:`REDACTED`, and
    :func:`redact_value` runs over everything. The number of lines is kept.

    >>> redact_text("+AWS_SECRET_ACCESS_KEY=abc123\\n+REGION=eu-west-1\\n")
    '+AWS_SECRET_ACCESS_KEY=***\\n+REGION=eu-west-1\\n'
    """
    if not isinstance(text, str) or not text:
        return text
    if ":" in text:
        text = _hide_yaml_blocks(text)
    return _hide_keys(_hide_shapes(text), whole_lines=True)
