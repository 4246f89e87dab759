"""The token gate's head check: which first requests pass, which are redirected, which are refused."""

from workers._token_gate import Verdict, check_request, cookie_name, redirect

TOKEN = "s3cr3t-T"
COOKIE = cookie_name(40123)


def head(target: str, *headers: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:40123\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def test_the_token_in_the_query_redirects_to_the_same_path_without_it():
    assert check_request(head(f"/?tkn={TOKEN}&folder=/workspace"), TOKEN, COOKIE) == Verdict("redirect", "/?folder=/workspace")
    assert check_request(head(f"/a/b?x=1&tkn={TOKEN}"), TOKEN, COOKIE) == Verdict("redirect", "/a/b?x=1")
    assert check_request(head(f"/?tkn={TOKEN}"), TOKEN, COOKIE) == Verdict("redirect", "/")


def test_the_cookie_passes():
    assert check_request(head("/static/x.js", f"Cookie: a=1; {COOKIE}={TOKEN}; b=2"), TOKEN, COOKIE) == Verdict("pass")


def test_a_wrong_or_missing_token_is_denied():
    assert check_request(head("/"), TOKEN, COOKIE).action == "deny"
    assert check_request(head("/?tkn=wrong"), TOKEN, COOKIE).action == "deny"
    assert check_request(head("/?tkn="), TOKEN, COOKIE).action == "deny"
    assert check_request(head("/", f"Cookie: {COOKIE}=wrong"), TOKEN, COOKIE).action == "deny"
    assert check_request(head("/", f"Cookie: corral-tkn-1={TOKEN}"), TOKEN, COOKIE).action == "deny"  # another port's
    assert check_request(head("/?x=é", "Cookie: é=ü"), TOKEN, COOKIE).action == "deny"  # non-ASCII does not raise


def test_a_malformed_head_is_denied():
    assert check_request(b"GET /?tkn=" + TOKEN.encode() + b"\r\n\r\n", TOKEN, COOKIE).action == "deny"
    assert check_request(f"GET /?tkn={TOKEN} HTTP/1.1\rX: y\r\n\r\n".encode(), TOKEN, COOKIE).action == "deny"
    assert check_request(b"\r\n\r\n", TOKEN, COOKIE).action == "deny"


def test_the_redirect_never_leaves_the_origin():
    assert check_request(head(f"//evil.example/x?tkn={TOKEN}"), TOKEN, COOKIE) == Verdict("redirect", "/x")
    assert check_request(head(f"http://evil.example/x?tkn={TOKEN}"), TOKEN, COOKIE) == Verdict("redirect", "/x")
    assert check_request(head(f"/\\evil.example/x?tkn={TOKEN}"), TOKEN, COOKIE) == Verdict("redirect", "/evil.example/x")


def test_the_redirect_sets_an_http_only_strict_cookie_for_the_whole_origin():
    answer = redirect("/?folder=/w", TOKEN, COOKIE).decode()
    assert answer.startswith("HTTP/1.1 302 Found\r\n")
    assert "\r\nLocation: /?folder=/w\r\n" in answer
    assert f"\r\nSet-Cookie: {COOKIE}={TOKEN}; Path=/; HttpOnly; SameSite=Strict\r\n" in answer
