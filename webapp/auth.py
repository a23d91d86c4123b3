"""Optional sign-in for deployments beyond one desk: Streamlit's OpenID Connect support.

Off by default. It is on when the app's secrets (``.streamlit/secrets.toml``) hold an
``[auth]`` section, as Streamlit documents for ``st.login``: ``redirect_uri``,
``cookie_secret`` and either one provider's ``client_id`` / ``client_secret`` /
``server_metadata_url`` directly in ``[auth]`` or named providers in ``[auth.NAME]``
sections. Then every page asks for a sign-in first; the account is shown in the sidebar
with a sign-out button. Nothing about the account is logged.
"""
from __future__ import annotations

from collections.abc import Mapping

import streamlit as st


def auth_settings() -> Mapping | None:
    """The ``[auth]`` secrets section, or None when sign-in is not configured."""
    try:
        if "auth" not in st.secrets:
            return None
        section = st.secrets["auth"]
    except Exception:  # no secrets file at all: Streamlit raises on access
        return None
    return section if isinstance(section, Mapping) else None


def providers(section: Mapping) -> list[str | None]:
    """Named providers (``[auth.NAME]``), or [None] for one provider given in ``[auth]``."""
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    return named or [None]


def require_sign_in() -> None:
    """Stop the page with a sign-in screen unless sign-in is off or the user is signed in."""
    section = auth_settings()
    if section is None:
        return
    if getattr(st.user, "is_logged_in", False):
        with st.sidebar:
            name = st.user.get("name") or st.user.get("email") or "signed in"
            st.caption(f"Signed in: {name}")
            st.button("Sign out", on_click=st.logout, key="auth_sign_out")
        return
    st.title("HER2 second-opinion workbench")
    st.caption("Research and teaching tool - not a medical device.")
    st.write("This deployment asks you to sign in before any case is opened.")
    for p in providers(section):
        label = "Sign in" if p is None else f"Sign in with {p}"
        st.button(label, on_click=st.login, args=(p,) if p else (), key=f"auth_login_{p or 'default'}",
                  type="primary")
    st.stop()
