"""WWW-Authenticate parsing: the reference table, RFC 9110 corners, hostile sizes."""

from __future__ import annotations

import pytest

from guara.registry import Challenge, parse_www_authenticate, parse_www_authenticate_headers


def _one(header: str) -> Challenge:
    challenges = parse_www_authenticate(header)
    assert len(challenges) == 1
    return challenges[0]


def test_reference_table_bearer_with_escapes() -> None:
    challenge = _one(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'other=fun,slashed="he\\"\\l\\lo"'
    )
    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "other": "fun",
        "slashed": 'he"llo',
    }


def test_quoted_comma_stays_in_scope() -> None:
    challenge = _one(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"'
    )
    assert challenge.params["scope"] == "repository:library/busybox:pull,push"


def test_scheme_and_keys_are_case_insensitive_values_are_not() -> None:
    challenge = _one('BaSiC ReAlM="Case insensitive key"')
    assert challenge.scheme == "basic"
    assert challenge.params == {"realm": "Case insensitive key"}
    assert challenge.realm == "Case insensitive key"


def test_unquoted_value() -> None:
    assert _one("Basic realm=unquoted").params == {"realm": "unquoted"}


def test_two_challenges_in_one_header() -> None:
    challenges = parse_www_authenticate(
        'Bearer realm="https://a/token", service="a", Basic realm="GitHub Package Registry"'
    )
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[0].params == {"realm": "https://a/token", "service": "a"}
    assert challenges[1].params == {"realm": "GitHub Package Registry"}


def test_two_challenges_of_the_same_scheme_stay_two() -> None:
    challenges = parse_www_authenticate('Bearer realm="https://a/t", Bearer realm="https://b/t"')
    assert [c.realm for c in challenges] == ["https://a/t", "https://b/t"]


def test_unclosed_quote_is_an_error_never_a_crash() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        parse_www_authenticate('Bearer realm="https://a/token",service="registry')


def test_spaces_around_equals_and_empty_values() -> None:
    challenge = _one('Bearer realm = "https://a/token" ,  scope="" , service=')
    assert challenge.params == {"realm": "https://a/token", "scope": "", "service": ""}


def test_scheme_without_params_and_empty_list_elements() -> None:
    challenges = parse_www_authenticate(" , Negotiate ,, Basic realm=x ,")
    assert [(c.scheme, dict(c.params)) for c in challenges] == [("negotiate", {}), ("basic", {"realm": "x"})]


def test_token68() -> None:
    challenges = parse_www_authenticate("Negotiate a87421000492aa874209af8bc028==, Basic realm=x")
    assert challenges[0].token68 == "a87421000492aa874209af8bc028=="
    assert challenges[0].params == {}
    assert challenges[1].params == {"realm": "x"}
    # a lone word after the scheme is a token68 too (RFC 9110), not a parameter without value
    assert _one("Basic realm").token68 == "realm"


def test_error_param_of_insufficient_scope() -> None:
    challenge = _one(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:acme/nope:pull",error="insufficient_scope"'
    )
    assert challenge.params["error"] == "insufficient_scope"


def test_merging_several_header_lines() -> None:
    challenges = parse_www_authenticate_headers(['Bearer realm="https://a/t",service="s"', "Basic realm=r"])
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert parse_www_authenticate_headers([]) == []


def test_empty_header_has_no_challenges() -> None:
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate("  ,  ") == []


def test_params_are_read_only() -> None:
    challenge = _one("Basic realm=x")
    with pytest.raises(TypeError):
        challenge.params["realm"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    "header",
    [
        "=x",
        '"quoted"',
        'Basic realm="a" junk',
        "Basic realm=a b",
        'Basic realm="x"=',
        "Basic abc== def",
        'Basic realm="a", realm="b"',  # a parameter twice: ambiguous, refused
        'Bearer realm="a\r\nX-Injected: 1"',
        'Basic realm="abc\\',
        "Bearer ,realm=x",
        "Bäsic realm=x",
        "Basic; realm=x",
        "@",
    ],
)
def test_garbage_raises_value_error(header: str) -> None:
    with pytest.raises(ValueError):
        parse_www_authenticate(header)


@pytest.mark.parametrize("value", [None, b"Basic realm=x", 42])
def test_non_text_raises_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_www_authenticate(value)  # type: ignore[arg-type]


# -- hostile sizes: one index-based pass, so 100 KB headers of every shape parse (or fail) in one go.
# Sizes, not timers: a quadratic parser would take minutes here and the suite's timeout would show it.

SIZE = 100 * 1024


def test_100kb_of_escapes_inside_one_quoted_string() -> None:
    value = "\\a" * (SIZE // 2)
    challenge = _one(f'Bearer realm="{value}"')
    assert challenge.params["realm"] == "a" * (SIZE // 2)


def test_100kb_of_parameters() -> None:
    count = SIZE // 12
    header = "Bearer " + ",".join(f"k{i}=v{i}" for i in range(count))
    challenge = _one(header)
    assert len(challenge.params) == count
    assert challenge.params[f"k{count - 1}"] == f"v{count - 1}"


def test_100kb_of_challenges() -> None:
    header = ", ".join(["Basic realm=x"] * (SIZE // 15))
    assert len(parse_www_authenticate(header)) == SIZE // 15


def test_100kb_of_separators_and_a_late_error() -> None:
    assert parse_www_authenticate("," * SIZE) == []
    with pytest.raises(ValueError):
        parse_www_authenticate("Basic realm=x" + " ," * (SIZE // 2) + ' "')


def test_100kb_unterminated_quote() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        parse_www_authenticate('Bearer realm="' + "x" * SIZE)


def test_100kb_scheme_only_names() -> None:
    header = ", ".join(f"S{i}" for i in range(SIZE // 8))
    assert len(parse_www_authenticate(header)) == SIZE // 8
