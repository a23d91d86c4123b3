"""Optional OpenID Connect sign-in: off without an [auth] secrets section, a sign-in screen
(and nothing else) with one."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "her2-workbench", "client_secret": "s",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}


def test_without_auth_secrets_the_app_opens_as_before():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Sign in")]


def test_with_auth_secrets_only_the_sign_in_screen_shows():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = AUTH
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert "sign in before any case is opened" in " ".join(m.value for m in at.markdown)
    assert not at.sidebar.selectbox          # no model chooser, no page content


def test_named_providers_get_one_button_each():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"],
                          "hospital": {k: AUTH[k] for k in ("client_id", "client_secret",
                                                            "server_metadata_url")}}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in with hospital"]
