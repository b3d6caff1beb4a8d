"""PHI/PII masking for everything radstream writes to logs or shows an operator.

:class:`PhiMasker` is a structlog processor; :func:`mask_text` and :func:`mask_value` serve the
other places that print data a patient could be identified by (``radstream dlq show``, API error
bodies). Masking works on two levels:

* **by key** — the value of a key that names a DICOM PHI attribute (by keyword such as
  ``PatientName``, by dictionary name such as ``Patient's Name``, by snake_case alias such as
  ``patient_name`` or by tag such as ``(0010,0010)``/``00100010``) or a personal field (``dob``,
  ``ssn``, ``email``, ``phone``, ``mrn``, ``client_ip``) is replaced whole by its typed marker;
* **by pattern** — every other string (the event message, keys, nested values) is scanned for
  e-mail addresses, phone numbers, US SSNs, dates of birth next to a birth keyword, the site's
  medical record number formats, IP addresses (when configured), DICOM person names written
  ``Family^Given`` and ``keyword=value`` / ``(gggg,eeee) ... VR: 'value'`` mentions of PHI
  attributes;
* **paths** — file names and URIs are chosen by senders (a router may name a file
  ``Doe^Jane_MRN-1234567_19420317.dcm``), so their paths are replaced whole by
  ``[REDACTED_PATH]``: values of path keys (``image_uri``, ``path``, ``file_name`` ...), URIs in
  text (``file:///…`` keeps its scheme, ``http://host:port/…`` its authority), absolute paths
  and image file names. Text is percent-decoded first (``%5E`` is ``^``), and ``_`` separates
  name components, so neither hides a name from the patterns.

Scalar values of keys known to be safe (UIDs, event and correlation ids, error codes, stages,
topics, offsets, timestamps, latencies) are passed through untouched so logs stay useful; their
formats cannot carry a name. ``correlation_id`` is the one safe key whose value a sender can
choose, so it is checked against its owner's rule (``schemas/correlation.py``): a value that is
not a canonical correlation id is replaced whole by ``[REDACTED_ID]``, whoever logged it.

Names written without a caret (``John Doe``) in free text cannot be told from other words and are
not detected: such text must never reach a log in the first place.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel

from observability.phi_attributes import BIRTH_DATE_KEYWORDS, PHI_ATTRIBUTES
from schemas.correlation import accept_correlation_id
from schemas.settings import LoggingSettings

REDACTED_EMAIL = "[REDACTED_EMAIL]"
REDACTED_PHONE = "[REDACTED_PHONE]"
REDACTED_SSN = "[REDACTED_SSN]"
REDACTED_DOB = "[REDACTED_DOB]"
REDACTED_MRN = "[REDACTED_MRN]"
REDACTED_IP = "[REDACTED_IP]"
REDACTED_PHI = "[REDACTED_PHI]"
REDACTED_ID = "[REDACTED_ID]"
REDACTED_PATH = "[REDACTED_PATH]"
TRUNCATED = "[TRUNCATED]"

# Nesting deeper than this is cut off: log values are small, and a cycle must not hang a worker.
_MAX_DEPTH = 32
# Distinct keys remembered per masker; the cache is simply cleared when full.
_KEY_CACHE_SIZE = 4096


def _normalise_key(key: str) -> str:
    """Fold ``Patient's Name``, ``patient_name``, ``(0010,0010)`` and ``0x00100010`` alike."""
    folded = re.sub(r"[^0-9a-z]", "", key.lower())
    if folded.startswith("0x") and len(folded) == 10:
        return folded[2:]
    return folded


def _snake(keyword: str) -> str:
    """``PatientBirthDate`` -> ``patient_birth_date`` (for free-text mentions)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keyword).lower()


# ----------------------------------------------------------------------------- keys
_PHI_TAGS: frozenset[int] = frozenset(attr.tag for attr in PHI_ATTRIBUTES)
_BIRTH_TAGS: frozenset[int] = frozenset(
    attr.tag for attr in PHI_ATTRIBUTES if attr.keyword in BIRTH_DATE_KEYWORDS
)

_KEY_MARKERS: dict[str, str] = {}
for _attr in PHI_ATTRIBUTES:
    _marker = REDACTED_DOB if _attr.keyword in BIRTH_DATE_KEYWORDS else REDACTED_PHI
    for _form in (_attr.keyword, _attr.name, f"{_attr.tag:08x}"):
        _KEY_MARKERS[_normalise_key(_form)] = _marker
for _marker, _forms in {
    REDACTED_DOB: ("dob", "date_of_birth", "birth_date", "birthdate", "birthday", "patient_dob"),
    REDACTED_SSN: ("ssn", "social_security_number", "patient_ssn"),
    REDACTED_EMAIL: ("email", "e_mail", "email_address", "mail"),
    REDACTED_PHONE: ("phone", "phone_number", "telephone", "telephone_number", "mobile", "fax"),
    REDACTED_MRN: ("mrn", "medical_record_number", "patient_mrn"),
    REDACTED_PHI: ("patient", "patient_name", "patient_id", "address", "person_name"),
    REDACTED_PATH: (
        "image_uri",
        "uri",
        "url",
        "path",
        "file",
        "filename",
        "file_name",
        "file_path",
        "filepath",
        "storage_path",
    ),
}.items():
    for _form in _forms:
        _KEY_MARKERS[_normalise_key(_form)] = _marker
_IP_KEYS = frozenset(
    _normalise_key(k) for k in ("ip", "ip_address", "client_ip", "remote_addr", "remote_ip", "peer")
)

# Values of these keys have formats that cannot carry a name (ids, codes, numbers, timestamps).
_SAFE_KEYS = frozenset(
    _normalise_key(k)
    for k in (
        "timestamp",
        "level",
        "logger",
        "logger_name",
        "correlation_id",
        "event_id",
        "dead_letter_id",
        "result_id",
        "request_id",
        "stage",
        "topic",
        "source_topic",
        "partition",
        "source_partition",
        "offset",
        "source_offset",
        "error_code",
        "code",
        "outcome",
        "status",
        "status_code",
        "attempt",
        "attempts",
        "schema_version",
        "model",
        "model_id",
        "model_name",
        "model_version",
        "sha256",
        "input_sha256",
        "weights_sha256",
        "route",
        "method",
        "group",
        "lag",
    )
)
# Safe keys whose values a sender may have chosen: logged only when their owner's rule accepts
# them unchanged (a canonical correlation id), else replaced whole.
_CHECKED_KEYS = frozenset({_normalise_key("correlation_id")})
_SAFE_SUFFIXES = ("uid", "_seconds", "_ms", "_at", "_sha256", "_bytes", "_count")
_SCALARS = (bool, int, float, Decimal, uuid.UUID, datetime, date, time, timedelta, enum.Enum)

# ----------------------------------------------------------------------------- patterns
_DATE = (
    r"\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2}|\d{8}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}\.\d{1,2}\.\d{4}"
    r"|\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?\s+\d{4}"
    r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}"
)
# A value after ``key=`` / ``key:``: quoted, bracketed, or running to the next field.
_VALUE = (
    r"'[^'\n]*'|\"[^\"\n]*\"|\[[^\]\n]*\]"
    r"|[^,;\n}\])\s][^,;\n}\])]*?(?=\s+[A-Za-z_][\w']*\s*[:=]|[,;\n}\])]|$)"
)

_TAG_VALUE_RE = re.compile(
    r"(\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)[^\n:=]{0,80}[:=]\s*)(" + _VALUE + r")"
)
_keyword_forms = sorted(
    {
        form
        for attr in PHI_ATTRIBUTES
        for form in (attr.keyword, _snake(attr.keyword), attr.name)
        if len(form) > 3
    },
    key=len,
    reverse=True,
)


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, as a trie (a flat alternation of ~300 is slow)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [
            (r"\s+" if char == " " else re.escape(char)) + emit(child)
            for char, child in sorted(node.items())
            if char
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


_KEYWORD_VALUE_RE = re.compile(
    r"(?<![\w'])("
    + _trie_pattern({form.lower() for form in _keyword_forms})
    + r")(?![\w'])(\s*[:=]\s*)("
    + _VALUE
    + r")",
    re.IGNORECASE,
)
_DOB_RE = re.compile(
    r"((?<![A-Za-z])dob(?![A-Za-z])|date[\s_-]*of[\s_-]*birth|birth[\s_-]*date|\bborn(?:\s+on)?\b"
    r"|\(\s*0010\s*,\s*003[03]\s*\)|\b0010003[03]\b)([^\n\d]{0,40}?)(" + _DATE + r")(?!\d)",
    re.IGNORECASE,
)
_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])"
)
_SSN_RE = re.compile(
    r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])"
    r"|(?<![A-Za-z])(?i:ssn)(?![A-Za-z])\s*[:#=]?\s*\d{9}(?!\d)"
)
_PHONE_CONTEXT_RE = re.compile(
    r"((?<![A-Za-z])(?:phone|tel|telephone|mobile|fax)(?![A-Za-z])[^\n\d+]{0,20}?)"
    r"(\+?\d[\d\s().-]{6,18}\d)(?!\d)",
    re.IGNORECASE,
)
_PHONE_RE = re.compile(
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, +1 555 123 4567
    r"(?<![\w.+/-])(?:\+?1[\s-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-]|\.\d)"
    # international, with a leading +: +44 20 7946 0958, +49-30-1234567
    r"|(?<![\w.+/-])\+[1-9]\d{0,2}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"
    r"(?![\w-]|\.\d)"
)
_IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w.]|\.\d)"
)
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6_RE = re.compile(
    rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:)+(?::{_H})+|(?:{_H}:)+:|::(?:{_H}:)*{_H})(?![\w:])"
)
# Components may hold digits (``CompressedSamples^CT1`` is a real test-file name); what makes a
# person name is the caret and at least two components with letters (see _person_name).
_NAME_PART = r"[A-Za-z0-9\u00c0-\u024f'\-]"
# ``_`` (a word character) separates components too: ``Doe^Jane_MRN-…`` is a name before ``_``.
_PERSON_NAME_RE = re.compile(
    rf"(?<![^\W_])(?<!\^){_NAME_PART}+(?:\^{_NAME_PART}*){{1,4}}(?![^\W_])(?!\^)"
)
# Paths: a URI's path (scheme and authority kept), an absolute POSIX path of two or more
# components, and a file name with an image or archive extension.
_PATH_CHARS = r"[^\s'\"<>|,;]"  # anything up to whitespace, quotes or a field separator
_SEGMENT = r"[^\s'\"<>|,;/]"  # the same within one path component
_URI_RE = re.compile(rf"(?i)\b([a-z][a-z0-9+.-]{{1,15}}://[^/\s'\"<>]*)(/{_PATH_CHARS}*)")
_ABSOLUTE_PATH_RE = re.compile(rf"(?<![\w.~:/\\-])/{_SEGMENT}+(?:/{_SEGMENT}*)+")
_FILE_NAME_RE = re.compile(
    rf"(?i)(?<![\w.-]){_SEGMENT}*?\.(?:dcm|dicom|png|jpe?g|tiff?|bmp|raw|nii(?:\.gz)?|zip)(?![\w.])"
)


_DIGIT_RE = re.compile(r"\d")
# Substrings without which _DOB_RE / _PHONE_CONTEXT_RE cannot match (cheap pre-checks).
_DOB_HINTS = ("dob", "birth", "born", "0010")
_PHONE_HINTS = ("phone", "tel", "mobile", "fax")


def _marker_for_tag(group: str, element: str) -> str | None:
    tag = int(group + element, 16)
    if tag in _BIRTH_TAGS:
        return REDACTED_DOB
    return REDACTED_PHI if tag in _PHI_TAGS else None


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    marker: str
    # A character the text must contain for the rule to possibly match; "" means "a digit",
    # None means always run (site MRN formats are arbitrary).
    needs: str | None


class PhiMasker:
    """A structlog processor replacing patient data in the event dict with typed markers.

    Args:
        mrn_patterns: regular expressions of the site's medical record number formats.
        mask_ip_addresses: also replace IPv4/IPv6 addresses (sites that count them as PII).
    """

    def __init__(
        self,
        *,
        mrn_patterns: Sequence[str] = LoggingSettings().mrn_patterns,
        mask_ip_addresses: bool = False,
    ) -> None:
        self._mrn = tuple(re.compile(pattern) for pattern in mrn_patterns)
        self._mask_ips = mask_ip_addresses
        self._key_cache: dict[object, tuple[str | None, bool, bool, object]] = {}
        rules = [_Rule(_EMAIL_RE, REDACTED_EMAIL, "@"), _Rule(_SSN_RE, REDACTED_SSN, "")]
        rules += [_Rule(pattern, REDACTED_MRN, None) for pattern in self._mrn]
        if mask_ip_addresses:
            rules += [_Rule(_IPV4_RE, REDACTED_IP, ""), _Rule(_IPV6_RE, REDACTED_IP, ":")]
        rules.append(_Rule(_PHONE_RE, REDACTED_PHONE, ""))
        self._rules = tuple(rules)

    @classmethod
    def from_settings(cls, settings: LoggingSettings) -> PhiMasker:
        """Build the masker a site configured (MRN formats, IP masking)."""
        return cls(mrn_patterns=settings.mrn_patterns, mask_ip_addresses=settings.mask_ip_addresses)

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Mask the event dict in place of structlog's pipeline (returns a masked copy)."""
        return self.mask_mapping(event_dict)

    # ------------------------------------------------------------------ text
    def mask_text(self, text: str) -> str:
        """Replace every PHI pattern found in free text with its marker."""
        if "%" in text:
            text = unquote(text)
        if "/" in text or "." in text:
            text = self.mask_paths(text)
        # Cheap character tests skip the regexes that cannot match (most log strings are short
        # event names and reasons without digits, separators or carets).
        if "=" in text or ":" in text:
            text = _TAG_VALUE_RE.sub(self._tag_value, text)
            text = _KEYWORD_VALUE_RE.sub(self._keyword_value, text)
        has_digit = _DIGIT_RE.search(text) is not None
        if has_digit:
            lowered = text.lower()
            if any(word in lowered for word in _DOB_HINTS):
                text = _DOB_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED_DOB}", text)
            if any(word in lowered for word in _PHONE_HINTS):
                text = _PHONE_CONTEXT_RE.sub(lambda m: f"{m.group(1)}{REDACTED_PHONE}", text)
        for rule in self._rules:
            if rule.needs is None or (rule.needs in text if rule.needs else has_digit):
                text = rule.pattern.sub(rule.marker, text)
        if "^" in text:
            text = _PERSON_NAME_RE.sub(self._person_name, text)
        return text

    @staticmethod
    def mask_paths(text: str) -> str:
        """Replace URI paths, absolute paths and image file names with ``[REDACTED_PATH]``."""
        text = _URI_RE.sub(
            lambda m: m.group(0) if m.group(2) == "/" else f"{m.group(1)}/{REDACTED_PATH}", text
        )
        text = _ABSOLUTE_PATH_RE.sub(REDACTED_PATH, text)
        return _FILE_NAME_RE.sub(REDACTED_PATH, text)

    @staticmethod
    def _tag_value(match: re.Match[str]) -> str:
        marker = _marker_for_tag(match.group(2), match.group(3))
        return match.group(0) if marker is None else match.group(1) + marker

    @staticmethod
    def _keyword_value(match: re.Match[str]) -> str:
        marker = _KEY_MARKERS.get(_normalise_key(match.group(1)), REDACTED_PHI)
        return f"{match.group(1)}{match.group(2)}{marker}"

    @staticmethod
    def _person_name(match: re.Match[str]) -> str:
        # ``Doe^`` alone or ``^^`` says nothing; at least two named components make a PN.
        named = [part for part in match.group(0).split("^") if any(c.isalpha() for c in part)]
        return REDACTED_PHI if len(named) >= 2 else match.group(0)

    # ------------------------------------------------------------------ values
    def key_marker(self, key: object) -> str | None:
        """The marker replacing the whole value of ``key``, or None when the key is not PHI."""
        if isinstance(key, int) and not isinstance(key, bool):
            if key in _BIRTH_TAGS:
                return REDACTED_DOB
            return REDACTED_PHI if key in _PHI_TAGS else None
        if not isinstance(key, str):
            return None
        folded = _normalise_key(key)
        if self._mask_ips and folded in _IP_KEYS:
            return REDACTED_IP
        return _KEY_MARKERS.get(folded)

    @staticmethod
    def is_safe_key(key: object) -> bool:
        """Whether scalar values of ``key`` are structural (ids, codes, numbers, times)."""
        if not isinstance(key, str):
            return False
        lowered = key.lower()
        return _normalise_key(key) in _SAFE_KEYS or lowered.endswith(_SAFE_SUFFIXES)

    def mask_value(self, value: object, _depth: int = 0) -> Any:
        """Return ``value`` with PHI masked, recursing into mappings, sequences and models."""
        result: Any
        if _depth > _MAX_DEPTH:
            result = TRUNCATED
        elif value is None or isinstance(value, _SCALARS):
            result = value
        elif isinstance(value, str):
            result = self.mask_text(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            # Raw bytes may be a whole DICOM file: never decode them into a log line.
            result = f"<{len(value)} bytes>"
        elif isinstance(value, BaseModel):
            result = self.mask_value(value.model_dump(mode="json"), _depth + 1)
        elif isinstance(value, Mapping):
            result = self.mask_mapping(value, _depth + 1)
        elif isinstance(value, tuple):
            result = tuple(self._mask_items(value, _depth))
        elif isinstance(value, list | set | frozenset):
            result = list(self._mask_items(value, _depth))
        else:
            result = self.mask_text(str(value))
        return result

    def _mask_items(self, items: Iterable[object], depth: int) -> Iterable[Any]:
        return (self.mask_value(item, depth + 1) for item in items)

    def _key_info(self, key: object) -> tuple[str | None, bool, bool, object]:
        """(value marker, safe key?, checked key?, masked key) of ``key``, cached.

        Log keys repeat a lot, so what is learnt of a key is remembered.
        """
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        info = (
            self.key_marker(key),
            self.is_safe_key(key),
            isinstance(key, str) and _normalise_key(key) in _CHECKED_KEYS,
            self.mask_text(key) if isinstance(key, str) else key,
        )
        if len(self._key_cache) >= _KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[key] = info
        return info

    def mask_mapping(self, mapping: Mapping[Any, Any], _depth: int = 0) -> dict[Any, Any]:
        """Mask keys and values of one mapping (a structlog event dict or nested data)."""
        masked: dict[Any, Any] = {}
        for key, value in mapping.items():
            marker, safe, checked, new_key = self._key_info(key)
            if marker is not None and value is not None:
                new_value: Any = marker
            elif checked and isinstance(value, str) and accept_correlation_id(value) != value:
                new_value = REDACTED_ID
            elif safe and (value is None or isinstance(value, (*_SCALARS, str))):
                new_value = value
            else:
                new_value = self.mask_value(value, _depth)
            if new_key in masked:
                # Two keys masked to the same marker: keep both values, number the second.
                suffix = 2
                while f"{new_key}#{suffix}" in masked:
                    suffix += 1
                new_key = f"{new_key}#{suffix}"
            masked[new_key] = new_value
        return masked


_default_masker = PhiMasker()


def set_default_masker(masker: PhiMasker) -> None:
    """Make :func:`mask_text`/:func:`mask_value` use the site's masker (called at start-up)."""
    global _default_masker  # noqa: PLW0603 - one process-wide masker, set once at start-up
    _default_masker = masker


def default_masker() -> PhiMasker:
    """The masker :func:`mask_text` and :func:`mask_value` use."""
    return _default_masker


def mask_text(s: str) -> str:
    """Mask PHI in free text with the process's masker (for CLI output and API bodies)."""
    return _default_masker.mask_text(s)


def mask_value(obj: object) -> Any:
    """Mask PHI in any value (mappings, sequences, pydantic models) with the process's masker."""
    return _default_masker.mask_value(obj)
