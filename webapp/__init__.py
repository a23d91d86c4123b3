"""Streamlit-side helpers of the app (state, services with caches, widgets).

Only the app imports this package; the library (her2core) never does.
"""
